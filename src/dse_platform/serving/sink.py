"""The foreachBatch body: score, upsert every table, publish predictions and dead letters.

Each bar is scored by the production model and, when the challenger alias names one, by the
challenger in shadow: the same `scoring.probabilities` call, stored under ``role`` beside each
other in ``predictions`` (and their outcomes in ``prediction_outcomes``). The challenger never
costs production anything: a challenger that fails to score is logged and recorded once per
version (``shadow_failed``) and the batch goes on without its rows. Only production's predictions
are published: the topic carries what was served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.contracts.records import DeadLetterRecord, PredictionRecord, epoch_ms
from dse_platform.contracts.tables import CHALLENGER, PRODUCTION
from dse_platform.errors import PlatformError
from dse_platform.model import features
from dse_platform.serving import database
from dse_platform.serving.parsing import BAR_COLUMNS
from dse_platform.serving.state import VALUE_COLUMNS, same_values
from dse_platform.serving.watcher import LoadedModel, ModelWatcher

log = logging.getLogger("dse.stream")

#: tries of one batch's database write, and of its Kafka publish, before the job fails (the supervisor restarts
#: it and the checkpoint replays the batch)
ATTEMPTS = 4

DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "raw", "raw_size", "reason", "field"]

#: what scoring writes to ``predictions`` (the database stamps scored_at)
SCORED_COLUMNS = [c.name for c in tables.predictions.columns if c.name != "scored_at"]

T = TypeVar("T")


def transient_db_error(exc: BaseException) -> bool:
    """A write worth trying again: the database restarted, failed over, or was locked for a moment (SQLite)."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)



def _ready(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars whose features are complete (``valid`` true; missing counts as not ready)."""
    return bars[bars["valid"].astype("boolean").fillna(False).to_numpy(dtype=bool)]

class BatchSink:
    """foreachBatch body: score (production, and the challenger in shadow), upsert everything, publish, log a line.

    ``challenger`` is the watcher of the shadow role; None scores production alone.
    """

    def __init__(self, settings: Settings, watcher: ModelWatcher, engine, producer, backoff_s: float = 0.5,
                 challenger: ModelWatcher | None = None) -> None:
        self.settings, self.engine, self.producer = settings, engine, producer
        self.watchers = {PRODUCTION: watcher, **({CHALLENGER: challenger} if challenger is not None else {})}
        self.backoff_s = backoff_s
        #: challenger versions that failed to score: logged and recorded once per version, not once per batch
        self._shadow_failures: set[str] = set()

    def __call__(self, batch, batch_id: int) -> None:
        started = time.perf_counter()
        frame = batch.toPandas()
        bad = frame[frame["kind"] == "bad"]
        bars = frame[frame["kind"] == "bar"]
        outcomes = frame[frame["kind"] == "outcome"]
        late = frame[frame["kind"] == "late"]
        models = {role: watcher.current for role, watcher in self.watchers.items()}
        scored = self._score(bars, models)
        resent, bad = self._retry(transient_db_error, f"writing batch {batch_id}",
                                  lambda: self._write(bars, scored, outcomes, late, bad))
        resent += int((frame["kind"] == "resent").sum())
        served = scored[scored["role"] == PRODUCTION]
        self._retry(lambda exc: isinstance(exc, PlatformError), f"publishing batch {batch_id}",
                    lambda: self._publish(served, bad))
        log.info("batch %d: %d in, %d bad, %d resent, %d scored, model %s, shadow %s, %d outcomes, %.0f ms",
                 batch_id, len(bars) + len(bad) + resent, len(bad), resent, len(served),
                 f"v{models[PRODUCTION].version}" if models[PRODUCTION] else "none",
                 self._shadow_label(models.get(CHALLENGER), int((scored["role"] == CHALLENGER).sum())),
                 len(outcomes), (time.perf_counter() - started) * 1000)

    def _shadow_label(self, loaded: LoadedModel | None, count: int) -> str:
        if loaded is None:
            return "none"
        if loaded.version in self._shadow_failures and not count:
            return f"v{loaded.version} failed"
        return f"v{loaded.version} {count} scored"

    def _retry(self, transient: Callable[[BaseException], bool], what: str, call: Callable[[], T]) -> T:
        """``call`` tried ATTEMPTS times with exponential backoff while it fails transiently, then re-raised."""
        retrying = Retrying(
            stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=self.backoff_s, max=10),
            retry=retry_if_exception(transient), reraise=True,
            before_sleep=lambda state: log.warning("%s failed (attempt %d of %d): %s; retrying", what,
                                                   state.attempt_number, ATTEMPTS, state.outcome.exception()))
        return retrying(call)

    def _write(self, bars: pd.DataFrame, scored: pd.DataFrame, outcomes: pd.DataFrame, late: pd.DataFrame,
               bad: pd.DataFrame) -> tuple[int, pd.DataFrame]:
        """Every table in one transaction, so a retry or a replayed batch writes all or nothing.

        Returns how many late bars were re-sent ones, and every dead letter (the late ones included).
        """
        with self.engine.begin() as conn:
            resent, late_bad = self._late(conn, late)
            if not late_bad.empty:
                bad = pd.concat([bad, late_bad], ignore_index=True)
            database.upsert(conn, tables.bars, bars[BAR_COLUMNS])
            ready = _ready(bars)
            database.upsert(conn, tables.features, pd.DataFrame({
                "symbol": ready["symbol"], "date": ready["date"], "feature_version": features.FEATURE_VERSION,
                "values": ready["features"]}))
            database.upsert(conn, tables.predictions, scored)
            database.upsert(conn, tables.prediction_outcomes, self._outcomes(conn, outcomes))
            database.upsert(conn, tables.dead_letters, bad[DEAD_LETTER_COLUMNS])
        return resent, bad

    def _score(self, bars: pd.DataFrame, models: dict[str, LoadedModel | None]) -> pd.DataFrame:
        """Every ready bar scored by each role's model, one row per (bar, role) that has a model.

        The features are decoded once for every role. A production fault fails the batch (retried by the
        supervisor's restart); a challenger fault only drops the shadow rows.
        """
        ready = _ready(bars)
        if ready.empty or not any(models.values()):
            return pd.DataFrame(columns=SCORED_COLUMNS)
        matrix = features.decode(ready["features"])
        frames = []
        for role, loaded in models.items():
            if loaded is None:
                continue
            try:
                frames.append(self._predictions(ready, matrix, role, loaded))
            except Exception as exc:
                if role == PRODUCTION:
                    raise
                self._shadow_failed(loaded, exc)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORED_COLUMNS)

    def _predictions(self, ready: pd.DataFrame, matrix: pd.DataFrame, role: str, loaded: LoadedModel
                     ) -> pd.DataFrame:
        from dse_platform.model import scoring

        p = scoring.probabilities(loaded.model, matrix)
        return pd.DataFrame({
            "symbol": ready["symbol"].to_numpy(), "date": ready["date"].to_numpy(), "probability": p,
            "label": (p >= 0.5).astype(int), "model_name": self.settings.model_name,
            "model_version": loaded.version, "feature_version": features.FEATURE_VERSION,
            "produced_at": ready["produced_at"].to_numpy(), "role": role})

    def _shadow_failed(self, loaded: LoadedModel, exc: Exception) -> None:
        """Log and record the first scoring failure of a challenger version; production goes on regardless."""
        if loaded.version in self._shadow_failures:
            return
        self._shadow_failures.add(loaded.version)
        log.error("challenger version %s failed to score (%s: %s); production is scored and stored as usual, "
                  "shadow rows of this version are skipped", loaded.version, type(exc).__name__, exc, exc_info=exc)
        try:
            database.record_event(self.engine, "shadow_failed", self.settings.model_name, version=loaded.version,
                                  source="stream", details={"role": CHALLENGER, "alias": self.settings.challenger_alias,
                                                            "error": f"{type(exc).__name__}: {exc}"[:500]})
        except Exception:  # the event is a courtesy: a database fault here must not fail production's batch
            log.exception("could not record model event shadow_failed for version %s", loaded.version)

    @staticmethod
    def _late(conn: Connection, late: pd.DataFrame) -> tuple[int, pd.DataFrame]:
        """Final bars older than their instrument's window, against the stored bars: (resent, dead letters).

        Identical to the stored bar: re-sent (a replay run again). Different: a ``duplicate``; not stored:
        ``out_of_order``. One bounded query, then an exact match here (as in ``_outcomes``).
        """
        if late.empty:
            return 0, late
        table = tables.bars
        rows = conn.execute(
            select(table.c.symbol, table.c.date, *(table.c[c] for c in VALUE_COLUMNS))
            .where(table.c.symbol.in_(sorted(set(late["symbol"]))),
                   table.c.date.between(late["date"].min(), late["date"].max()))).mappings().all()
        stored = {(row["symbol"], row["date"]): row for row in rows}

        def reason(row: dict) -> str | None:
            found = stored.get((row["symbol"], row["date"]))
            if found is None:
                return "out_of_order"
            return None if same_values(found, row) else "duplicate"

        reasons = pd.Series([reason(row) for row in late.to_dict("records")], index=late.index, dtype=object)
        dead = late[reasons.notna()].assign(kind="bad", reason=reasons[reasons.notna()])
        return int(reasons.isna().sum()), dead

    def _outcomes(self, conn: Connection, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Outcomes of bars that were scored: joined with their stored predictions, one row per role."""
        if outcomes.empty:
            return pd.DataFrame()
        table = tables.predictions
        # a bounding query, then an exact join here: thousands of (symbol, date) pairs in one IN list
        # exceed PostgreSQL's expression depth
        result = conn.execute(
            select(table.c.symbol, table.c.date, table.c.role, table.c.probability, table.c.label,
                   table.c.model_version)
            .where(table.c.symbol.in_(sorted(set(outcomes["symbol"]))),
                   table.c.date.between(outcomes["date"].min(), outcomes["date"].max())))
        # rows as tuples under the result's column names: a mapping per row cost a second per 100,000
        stored = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        if stored.empty:
            return pd.DataFrame()
        merged = outcomes[["symbol", "date", "next_date", "actual"]].merge(stored, on=["symbol", "date"])
        merged["correct"] = merged["label"] == merged["actual"]
        return merged

    def _publish(self, scored: pd.DataFrame, bad: pd.DataFrame) -> None:
        """Send the batch's predictions and dead letters, and wait until Kafka acknowledged every one.

        Retried whole when Kafka did not acknowledge: records that did arrive the first time arrive again.
        Acceptable: both topics are keyed (symbol, source topic) and their values identify the record
        (symbol and date, topic/partition/offset), so a consumer keeping the latest per key sees no change.
        """
        if self.producer is None:
            return
        scored_at = epoch_ms()
        for row in scored.itertuples(index=False):
            prediction = PredictionRecord(
                symbol=row.symbol, date=row.date, probability=float(row.probability), label=int(row.label),
                model_name=row.model_name, model_version=row.model_version, feature_version=row.feature_version,
                produced_at=int(row.produced_at), scored_at=scored_at)
            self.producer.send(self.settings.predictions_topic, row.symbol, prediction.to_bytes())
        for row in bad.itertuples(index=False):
            raw = b"" if row.raw is None else bytes(row.raw)
            letter = DeadLetterRecord.of(raw, row.reason, "stream", row.topic, int(row.partition), int(row.offset))
            if not pd.isna(row.raw_size):  # the parse step cut raw already: keep the size it had on the topic
                letter = letter.model_copy(update={"raw_size": int(row.raw_size)})
            self.producer.send(self.settings.deadletter_topic, row.topic, letter.to_bytes())
        self.producer.flush_or_fail()
