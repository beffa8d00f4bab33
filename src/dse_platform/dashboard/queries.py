"""Every SQL statement the dashboard runs, as SQLAlchemy Core on the serving tables.

Each function aggregates in the database and returns a small frame, so a page ships
counts and sums rather than rows; the few that return rows (an instrument's history, a
page of dead letters) are bounded by key ranges or LIMIT. Every value reaches the
database as a bound parameter. The index each statement relies on is named beside it;
``bench/bench_dashboard.py`` times them on a million predictions.

Predictions and outcomes carry the scoring ``role``: ``production`` (served) is the
headline everywhere, ``challenger`` (scored in shadow) is shown beside it where present.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import BigInteger, Engine, Float, Select, and_, case, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from dse_platform.contracts.tables import PRODUCTION, ROLES, bars, dead_letters, model_events, predictions
from dse_platform.contracts.tables import prediction_outcomes as outcomes
from dse_platform.data.instruments import INDEX_ALIASES, INDEX_SYMBOLS, canonical_symbol
from dse_platform.serving import database

#: the indices the Market page charts, in DSE's order: broad, Shariah, blue chips
MARKET_INDICES = (INDEX_ALIASES["DSEX"], INDEX_ALIASES["DSES"], INDEX_ALIASES["DS30"])
#: `model_events` rows that are a gate decision (`model/gate.py`)
DECISIONS = ("promoted", "held", "forced")
#: what the streaming job records about the model it serves (`serving/watcher.py`)
STREAM_EVENTS = ("reloaded", "registry_unreachable", "cached_model_loaded")
#: upper edges (ms) of the produce-to-row lag histogram; the last bucket is open
LAG_EDGES_MS = (250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000)
CALIBRATION_BINS = 10


class epoch_ms(FunctionElement):
    """A timestamp column as integer epoch milliseconds, on SQLite (text stamps) and PostgreSQL alike."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_ms, "sqlite")
def _epoch_ms_sqlite(element: epoch_ms, compiler, **kw) -> str:
    # julianday keeps whole milliseconds; its float product is rounded, as truncating it can lose one
    return f"CAST(round((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400000) AS INTEGER)"


@compiles(epoch_ms, "postgresql")
def _epoch_ms_postgresql(element: epoch_ms, compiler, **kw) -> str:
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)}) * 1000) AS BIGINT)"


def _frame(engine: Engine, stmt: Select) -> pd.DataFrame:
    return database.read_frame(engine, stmt)


def _count_true(condition: ColumnElement) -> ColumnElement:
    return func.sum(case((condition, 1), else_=0))


# ---- what is there ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataState:
    """What the database holds: its schema revision against the one the dashboard reads, and whether rows exist."""

    revision: str | None
    head: str
    has_bars: bool
    has_predictions: bool

    @property
    def current(self) -> bool:
        return self.revision == self.head

    @property
    def empty(self) -> bool:
        return not (self.has_bars or self.has_predictions)


def data_state(engine: Engine) -> DataState:
    """The schema revision and whether bars and predictions exist (one row each at most: PK scans)."""
    revision, head = database.schema_revision(engine), database.head_revision()
    if revision != head:
        return DataState(revision, head, False, False)
    with engine.connect() as conn:
        has_bars = conn.execute(select(bars.c.symbol).limit(1)).first() is not None
        has_predictions = conn.execute(select(predictions.c.symbol).limit(1)).first() is not None
    return DataState(revision, head, has_bars, has_predictions)


def latest_session(engine: Engine) -> dt.date | None:
    """The newest bar date (ix_bars_date, read backwards)."""
    with engine.connect() as conn:
        return conn.execute(select(bars.c.date).order_by(bars.c.date.desc()).limit(1)).scalar()


def latest_prediction_date(engine: Engine, role: str = PRODUCTION) -> dt.date | None:
    """The newest scored bar date of a role (ix_predictions_role_date, read backwards)."""
    with engine.connect() as conn:
        return conn.execute(select(predictions.c.date).where(predictions.c.role == role)
                            .order_by(predictions.c.date.desc()).limit(1)).scalar()


# ---- market -----------------------------------------------------------------------------------------
def index_history(engine: Engine, since: dt.date) -> pd.DataFrame:
    """DSEX, DSES and DS30 bars from ``since`` (primary key: symbol, date)."""
    return _frame(engine, select(bars.c.symbol, bars.c.date, bars.c.open, bars.c.high, bars.c.low, bars.c.close,
                                 bars.c.value_mn)
                  .where(bars.c.symbol.in_(MARKET_INDICES), bars.c.date >= since)
                  .order_by(bars.c.symbol, bars.c.date))


def _day_changes(day: dt.date):
    """Each instrument's close on ``day`` beside its previous bar's close (ix_bars_date, then one PK probe each)."""
    prev = bars.alias("prev")
    prev_close = (select(prev.c.close).where(prev.c.symbol == bars.c.symbol, prev.c.date < bars.c.date)
                  .order_by(prev.c.date.desc()).limit(1).scalar_subquery())
    return (select(bars.c.symbol, bars.c.close, bars.c.volume, bars.c.value_mn, prev_close.label("prev_close"))
            .where(bars.c.date == day, bars.c.symbol.not_in(sorted(INDEX_SYMBOLS))).subquery("day"))


def breadth(engine: Engine, day: dt.date) -> dict[str, int]:
    """Advancers, decliners and unchanged instruments on ``day`` (indices excluded), and first bars (no previous)."""
    moves = _day_changes(day)
    stmt = select(_count_true(moves.c.close > moves.c.prev_close).label("advancers"),
                  _count_true(moves.c.close < moves.c.prev_close).label("decliners"),
                  _count_true(moves.c.close == moves.c.prev_close).label("unchanged"),
                  _count_true(moves.c.prev_close.is_(None)).label("first_bar"))
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().one()
    return {k: int(v or 0) for k, v in row.items()}


def top_movers(engine: Engine, day: dt.date, limit: int = 10) -> pd.DataFrame:
    """The ``limit`` biggest gainers and losers on ``day`` by close-to-close change (%), gainers first.

    An unchanged close is neither.
    """
    moves = _day_changes(day)
    change = ((moves.c.close / moves.c.prev_close - 1) * 100).label("change_pct")
    base = select(moves.c.symbol, moves.c.close, moves.c.prev_close, change, moves.c.volume, moves.c.value_mn
                  ).where(moves.c.prev_close.is_not(None), moves.c.prev_close > 0)
    gainers = _frame(engine, base.where(moves.c.close > moves.c.prev_close)
                     .order_by(change.desc(), moves.c.symbol).limit(limit))
    losers = _frame(engine, base.where(moves.c.close < moves.c.prev_close)
                    .order_by(change.asc(), moves.c.symbol).limit(limit))
    return pd.concat([gainers.assign(side="gainer"), losers.assign(side="loser")], ignore_index=True)


def predicted_direction(engine: Engine, day: dt.date) -> pd.DataFrame:
    """Per role and version: instruments scored on ``day``, how many called up, mean P(up) (ix_predictions_date)."""
    return _frame(engine, select(predictions.c.role, predictions.c.model_version, func.count().label("scored"),
                                 func.sum(predictions.c.label).label("up"),
                                 func.avg(predictions.c.probability).label("mean_probability"))
                  .where(predictions.c.date == day)
                  .group_by(predictions.c.role, predictions.c.model_version)
                  .order_by(predictions.c.role.desc(), predictions.c.model_version))


def predicted_up_share(engine: Engine, since: dt.date) -> pd.DataFrame:
    """Per production-scored date from ``since``: instruments scored, called up, and resolved up (ix_*_role_date)."""
    called = (select(predictions.c.date, func.count().label("scored"), func.sum(predictions.c.label).label("up"))
              .where(predictions.c.role == PRODUCTION, predictions.c.date >= since)
              .group_by(predictions.c.date).subquery("called"))
    resolved = (select(outcomes.c.date, func.count().label("resolved"), func.sum(outcomes.c.actual).label("went_up"))
                .where(outcomes.c.role == PRODUCTION, outcomes.c.date >= since)
                .group_by(outcomes.c.date).subquery("resolved"))
    return _frame(engine, select(called, resolved.c.resolved, resolved.c.went_up)
                  .select_from(called.outerjoin(resolved, resolved.c.date == called.c.date))
                  .order_by(called.c.date))


# ---- instrument -------------------------------------------------------------------------------------
def find_instrument(engine: Engine, text: str) -> str | None:
    """The stored code the user typed (case, spaces and DSE's index names forgiven), or None: not found (PK probe)."""
    code = canonical_symbol(text)
    if not code:
        return None
    with engine.connect() as conn:
        return conn.execute(select(bars.c.symbol).where(bars.c.symbol == code).limit(1)).scalar()


def suggest_codes(engine: Engine, text: str, limit: int = 12) -> list[str]:
    """Stored codes that start with what was typed: a primary-key range, not LIKE, read in key order up to ``limit``."""
    prefix = canonical_symbol(text)
    if not prefix:
        return []
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    with engine.connect() as conn:
        return list(conn.execute(select(bars.c.symbol).where(bars.c.symbol >= prefix, bars.c.symbol < upper)
                                 .group_by(bars.c.symbol).order_by(bars.c.symbol).limit(limit)).scalars())


def instrument_bars(engine: Engine, symbol: str, since: dt.date) -> pd.DataFrame:
    """One instrument's bars from ``since`` (primary key range)."""
    return _frame(engine, select(bars.c.date, bars.c.open, bars.c.high, bars.c.low, bars.c.close, bars.c.volume,
                                 bars.c.trades, bars.c.value_mn, bars.c.source)
                  .where(bars.c.symbol == symbol, bars.c.date >= since).order_by(bars.c.date))


def instrument_predictions(engine: Engine, symbol: str, since: dt.date) -> pd.DataFrame:
    """One instrument's predictions from ``since``, each with its outcome once resolved (primary key ranges)."""
    joined = predictions.outerjoin(outcomes, and_(outcomes.c.symbol == predictions.c.symbol,
                                                  outcomes.c.date == predictions.c.date,
                                                  outcomes.c.role == predictions.c.role))
    return _frame(engine, select(predictions.c.date, predictions.c.role, predictions.c.probability,
                                 predictions.c.label, predictions.c.model_version, outcomes.c.next_date,
                                 outcomes.c.actual, outcomes.c.correct)
                  .select_from(joined)
                  .where(predictions.c.symbol == symbol, predictions.c.date >= since)
                  .order_by(predictions.c.date, predictions.c.role))


# ---- model ------------------------------------------------------------------------------------------
def events(engine: Engine, kinds: tuple[str, ...], limit: int = 50, source_prefix: str | None = None
           ) -> pd.DataFrame:
    """The latest model events of the given kinds, newest first (ix_model_events_at, read backwards)."""
    stmt = select(model_events).where(model_events.c.event.in_(kinds))
    if source_prefix is not None:
        stmt = stmt.where(model_events.c.source.startswith(source_prefix, autoescape=True))
    return _frame(engine, stmt.order_by(model_events.c.at.desc(), model_events.c.id.desc()).limit(limit))


def scored_versions(engine: Engine, day: dt.date) -> pd.DataFrame:
    """Which model version scored ``day`` in each role, and how many rows (ix_predictions_date)."""
    return _frame(engine, select(predictions.c.role, predictions.c.model_version, predictions.c.model_name,
                                 predictions.c.feature_version, func.count().label("rows"))
                  .where(predictions.c.date == day)
                  .group_by(predictions.c.role, predictions.c.model_version, predictions.c.model_name,
                            predictions.c.feature_version))


def accuracy_by_day(engine: Engine, since: dt.date) -> pd.DataFrame:
    """Per bar date, role and version from ``since``: resolved outcomes, how many right, how many went up.

    Enough for accuracy and for the always-up and majority baselines of any window, summed later.
    The roles are named so that each is a range of ix_prediction_outcomes_role_date.
    """
    return _frame(engine, select(outcomes.c.date, outcomes.c.role, outcomes.c.model_version,
                                 func.count().label("outcomes"), _count_true(outcomes.c.correct).label("correct"),
                                 func.sum(outcomes.c.actual).label("went_up"))
                  .where(outcomes.c.role.in_(ROLES), outcomes.c.date >= since)
                  .group_by(outcomes.c.date, outcomes.c.role, outcomes.c.model_version)
                  .order_by(outcomes.c.date))


def calibration(engine: Engine, since: dt.date) -> pd.DataFrame:
    """Per role and probability decile from ``since``: outcomes, mean predicted P(up), observed up rate.

    A range of ix_prediction_outcomes_role_date per role.
    """
    width = 1 / CALIBRATION_BINS
    decile = case(*((outcomes.c.probability < (i + 1) * width, i) for i in range(CALIBRATION_BINS - 1)),
                  else_=CALIBRATION_BINS - 1).label("bin")
    return _frame(engine, select(outcomes.c.role, decile, func.count().label("outcomes"),
                                 func.avg(outcomes.c.probability).label("predicted"),
                                 func.avg(cast(outcomes.c.actual, Float)).label("observed"))
                  .where(outcomes.c.role.in_(ROLES), outcomes.c.date >= since)
                  .group_by(outcomes.c.role, decile).order_by(outcomes.c.role, decile))


# ---- pipeline ---------------------------------------------------------------------------------------
def lag_by_minute(engine: Engine, since: dt.datetime) -> pd.DataFrame:
    """Per minute of commit from ``since``: rows committed, mean and max produce-to-row lag (ms).

    Production predictions: ``scored_at`` (when the row was written) against the bar's
    ``produced_at`` (when it entered Kafka). Without an index on ``predictions (role, scored_at)``
    it reads every production row (ix_predictions_role_date); with one, the window's rows only.
    """
    committed = epoch_ms(predictions.c.scored_at)
    lag = committed - predictions.c.produced_at
    minute = (committed // 60_000).label("minute")
    return _frame(engine, select(minute, func.count().label("rows"), cast(func.avg(lag), Float).label("mean_lag_ms"),
                                 func.max(lag).label("max_lag_ms"))
                  .where(predictions.c.scored_at >= since, predictions.c.role == PRODUCTION)
                  .group_by(minute).order_by(minute))


def lag_histogram(engine: Engine, since: dt.datetime) -> pd.DataFrame:
    """How many production predictions committed since ``since`` fell in each lag bucket (LAG_EDGES_MS).

    The same rows as ``lag_by_minute``, so the same index need.
    """
    lag = epoch_ms(predictions.c.scored_at) - predictions.c.produced_at
    bucket = case(*((lag < edge, i) for i, edge in enumerate(LAG_EDGES_MS)), else_=len(LAG_EDGES_MS)).label("bucket")
    return _frame(engine, select(bucket, func.count().label("rows"))
                  .where(predictions.c.scored_at >= since, predictions.c.role == PRODUCTION)
                  .group_by(bucket).order_by(bucket))


def dead_letter_reasons(engine: Engine, since: dt.datetime) -> pd.DataFrame:
    """Dead letters received since ``since`` per reason, with the newest (ix_dead_letters_received_at)."""
    return _frame(engine, select(dead_letters.c.reason, func.count().label("count"),
                                 func.max(dead_letters.c.received_at).label("latest"))
                  .where(dead_letters.c.received_at >= since)
                  .group_by(dead_letters.c.reason).order_by(func.count().desc(), dead_letters.c.reason))


def dead_letter_page(engine: Engine, reason: str, since: dt.datetime, page: int, size: int = 20) -> pd.DataFrame:
    """One page of a reason's dead letters, newest first; raw bytes as stored (at most 4 KiB each)."""
    return _frame(engine, select(dead_letters.c.received_at, dead_letters.c.topic, dead_letters.c.partition,
                                 dead_letters.c.offset, dead_letters.c.field, dead_letters.c.raw_size,
                                 dead_letters.c.raw)
                  .where(dead_letters.c.reason == reason, dead_letters.c.received_at >= since)
                  .order_by(dead_letters.c.received_at.desc(), dead_letters.c.topic, dead_letters.c.partition,
                            dead_letters.c.offset)
                  .limit(size).offset(page * size))
