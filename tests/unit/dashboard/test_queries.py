"""The dashboard's queries on a SQLite serving database filled by the sink's upserts, read through a read-only engine.

Every figure is checked against the rows written (computed again with pandas), so a query
that aggregates in SQL is held to the same answer as the obvious in-memory one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import OperationalError

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.dashboard import connection, queries
from dse_platform.serving import database
from tests.unit.dashboard import world as worlds


def _settings(path: Path) -> Settings:
    return Settings(_env_file=None, db_url=f"sqlite:///{path}")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[worlds.World, object]:
    """The constructed world written to a SQLite file, and a read-only engine on it."""
    path = tmp_path_factory.mktemp("serving") / "serving.db"
    data = worlds.make()
    writer = create_engine(f"sqlite:///{path}")
    worlds.write(writer, data)
    writer.dispose()
    return data, connection.engine(_settings(path))


def _changes(bars: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    ordered = bars.sort_values(["symbol", "date"]).assign(prev_close=lambda f: f.groupby("symbol")["close"].shift())
    return ordered[(ordered["date"] == day) & ~ordered["symbol"].isin(worlds.INDICES)]


def test_state_of_a_filled_database(world) -> None:
    data, engine = world
    state = queries.data_state(engine)
    assert state.current and not state.empty
    assert queries.latest_session(engine) == data.sessions[-1]
    assert queries.latest_prediction_date(engine) == data.sessions[-1]
    assert queries.latest_prediction_date(engine, "challenger") == data.sessions[-1]


def test_empty_and_unmigrated_databases(tmp_path) -> None:
    blank = tmp_path / "blank.db"
    create_engine(f"sqlite:///{blank}").connect().close()
    state = queries.data_state(connection.engine(_settings(blank)))
    assert state.revision is None and not state.current

    empty = tmp_path / "empty.db"
    database.migrate(create_engine(f"sqlite:///{empty}"))
    state = queries.data_state(connection.engine(_settings(empty)))
    assert state.current and state.empty


def test_the_read_only_engine_refuses_a_write(world) -> None:
    _, engine = world
    row = {"symbol": "NEW", "date": dt.date(2024, 1, 1), "open": 1, "high": 1, "low": 1, "close": 1,
           "source": "replay", "produced_at": 0}
    with pytest.raises(OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(insert(tables.bars).values(**row))
    with pytest.raises(OperationalError, match="readonly"), engine.begin() as conn:
        conn.execute(text("DROP TABLE predictions"))


def test_index_history_holds_the_three_indices(world) -> None:
    data, engine = world
    history = queries.index_history(engine, data.sessions[-10])
    assert set(history["symbol"]) == set(queries.MARKET_INDICES)
    assert len(history) == 3 * 10


def test_breadth_and_movers_match_the_bars(world) -> None:
    data, engine = world
    day = data.sessions[-1]
    expected = _changes(data.bars, day)
    counts = queries.breadth(engine, day)
    assert counts == {"advancers": int((expected["close"] > expected["prev_close"]).sum()),
                      "decliners": int((expected["close"] < expected["prev_close"]).sum()),
                      "unchanged": int((expected["close"] == expected["prev_close"]).sum()), "first_bar": 0}
    movers = queries.top_movers(engine, day, limit=2)
    gainers, losers = movers[movers["side"] == "gainer"], movers[movers["side"] == "loser"]
    change = (expected["close"] / expected["prev_close"] - 1) * 100
    assert list(gainers["symbol"]) == list(expected.loc[change[change > 0].nlargest(2).index, "symbol"])
    assert list(losers["symbol"]) == list(expected.loc[change[change < 0].nsmallest(2).index, "symbol"])
    assert (gainers["change_pct"] > 0).all() and (losers["change_pct"] < 0).all()


def test_predicted_direction_per_role(world) -> None:
    data, engine = world
    day = data.sessions[-1]
    called = queries.predicted_direction(engine, day).set_index("role")
    for role in ("production", "challenger"):
        rows = data.predictions[(data.predictions["date"] == day) & (data.predictions["role"] == role)]
        assert called.loc[role, "scored"] == len(rows)
        assert called.loc[role, "up"] == rows["label"].sum()
    share = queries.predicted_up_share(engine, data.sessions[-5])
    assert len(share) == 5 and share["resolved"].isna().iloc[-1]  # the last session has no next bar yet


def test_a_trading_code_is_found_forgivingly(world) -> None:
    _, engine = world
    assert queries.find_instrument(engine, " gp ") == "GP"
    assert queries.find_instrument(engine, "dsex") == "00DSEX"
    assert queries.find_instrument(engine, "") is None
    assert queries.suggest_codes(engine, "b") == ["BATBC", "BEXIMCO", "BRACBANK"]


def test_an_injection_is_simply_not_found(world) -> None:
    data, engine = world
    assert queries.find_instrument(engine, worlds.INJECTION) is None
    assert queries.suggest_codes(engine, worlds.INJECTION) == []
    assert queries.instrument_bars(engine, worlds.INJECTION, dt.date.min).empty
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.predictions)).scalar() == len(data.predictions)


def test_instrument_history_joins_outcomes_by_role(world) -> None:
    data, engine = world
    bars = queries.instrument_bars(engine, "GP", data.sessions[-20])
    assert len(bars) == 20 and bars["date"].is_monotonic_increasing
    preds = queries.instrument_predictions(engine, "GP", dt.date.min)
    assert len(preds) == (data.predictions["symbol"] == "GP").sum()
    resolved = preds.dropna(subset=["actual"])
    expected = data.outcomes[data.outcomes["symbol"] == "GP"]
    assert len(resolved) == len(expected)
    assert set(preds.loc[preds["date"] == data.sessions[-1], "role"]) == {"production", "challenger"}
    assert preds.loc[preds["date"] == data.sessions[-1], "correct"].isna().all()


def test_accuracy_and_calibration_add_up(world) -> None:
    data, engine = world
    daily = queries.accuracy_by_day(engine, dt.date.min)
    totals = daily.groupby("role")[["outcomes", "correct", "went_up"]].sum()
    expected = data.outcomes.groupby("role").agg(outcomes=("actual", "size"), correct=("correct", "sum"),
                                                 went_up=("actual", "sum"))
    pd.testing.assert_frame_equal(totals.sort_index(), expected.sort_index(), check_dtype=False)
    calib = queries.calibration(engine, dt.date.min)
    assert calib.groupby("role")["outcomes"].sum().to_dict() == expected["outcomes"].to_dict()
    assert calib["bin"].between(0, queries.CALIBRATION_BINS - 1).all()
    assert ((calib["predicted"] >= calib["bin"] / 10) & (calib["predicted"] < (calib["bin"] + 1) / 10)).all()


def test_events_newest_first_and_the_nightly_decision(world) -> None:
    _, engine = world
    decisions = queries.events(engine, queries.DECISIONS)
    assert list(decisions["event"]) == ["held", "promoted"]
    nightly = queries.events(engine, queries.DECISIONS, limit=1, source_prefix=tables.NIGHTLY_SOURCE_PREFIX)
    assert nightly.iloc[0]["source"] == worlds.NIGHTLY_SOURCE
    assert list(queries.events(engine, ("alert",))["source"]) == ["monitoring"]
    versions = queries.scored_versions(engine, world[0].sessions[-1]).set_index("role")["model_version"]
    assert versions.to_dict() == {"production": "3", "challenger": "4"}


def test_lag_is_commit_time_minus_produce_time(world) -> None:
    data, engine = world
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    minutes = queries.lag_by_minute(engine, since)
    production = data.predictions[data.predictions["role"] == "production"]
    assert minutes["rows"].sum() == len(production)
    with engine.connect() as conn:
        scored_at = tables.predictions.c.scored_at
        stamp, ms = conn.execute(select(scored_at, queries.epoch_ms(scored_at)).limit(1)).one()
    assert abs(ms - stamp.timestamp() * 1000) <= 1
    assert (minutes["mean_lag_ms"] > 0).all()
    buckets = queries.lag_histogram(engine, since)
    assert buckets["rows"].sum() == len(production)
    assert queries.lag_by_minute(engine, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).empty


def test_dead_letters_by_reason_and_in_pages(world) -> None:
    _, engine = world
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    reasons = queries.dead_letter_reasons(engine, since).set_index("reason")["count"]
    assert reasons.to_dict() == {"bad_number": worlds.BAD_NUMBERS, "invalid_json": 1, "not_utf8": 1}
    first = queries.dead_letter_page(engine, "bad_number", since, 0, 20)
    second = queries.dead_letter_page(engine, "bad_number", since, 1, 20)
    assert (len(first), len(second)) == (20, worlds.BAD_NUMBERS - 20)
    assert not set(first["offset"]) & set(second["offset"])
    hostile = queries.dead_letter_page(engine, "invalid_json", since, 0)
    assert bytes(hostile.iloc[0]["raw"]) == worlds.HOSTILE_RAW


def test_reader_urls(tmp_path) -> None:
    local = Settings(_env_file=None, db_backend="postgres", postgres_port=5999)
    assert connection.reader_url(local).username == "dse_reader"
    assert connection.reader_url(local).database == "dse"
    given = Settings(_env_file=None, db_url="postgresql://owner:pw@db/dse", dashboard_db_url="postgresql://ro@db/dse")
    assert connection.describe(given) == "postgresql://ro@db/dse"
    assert connection.sqlite_path(connection.reader_url(_settings(tmp_path / "x.db"))) == tmp_path / "x.db"
