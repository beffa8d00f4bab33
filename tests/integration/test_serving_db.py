"""The serving database on both backends: one test body each, run on a SQLite file and on the platform's PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import StatementError

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.contracts.tables import bars, dead_letters, predictions
from dse_platform.errors import PlatformError
from dse_platform.serving import database
from tests.support.platform import free_port

UTC = dt.UTC


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services),
                        pytest.param("postgres-copy", marks=pytest.mark.services)])
def db(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A serving database with the schema: a fresh SQLite file, or the session platform's PostgreSQL.

    ``postgres-copy`` runs the same tests through the COPY path (taken from ``database.COPY_ROWS`` rows up, a
    micro-batch's size) by lowering that threshold to one row, so every row here goes the way a micro-batch does.
    The pool is emptied afterwards: an idle pooled connection would hold up PostgreSQL's shutdown at `dse down`.
    """
    if request.param == "postgres-copy":
        monkeypatch.setattr(database, "COPY_ROWS", 1)
    if request.param.startswith("postgres"):
        settings = request.getfixturevalue("platform")
    else:
        settings = Settings(_env_file=None, home=tmp_path / "not-yet-there", db_backend="sqlite", db_url=None)
    eng = database.engine(settings)
    assert eng.dialect.name == {"sqlite": "sqlite"}.get(request.param, "postgresql")
    database.migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def tag() -> str:
    """A prefix private to one test, so tests sharing the session's PostgreSQL never see each other's rows."""
    return f"T{uuid.uuid4().hex[:8]}"


def bar_frame(tag: str) -> pd.DataFrame:
    """Bars the way a pandas producer hands them over: numpy scalars, NaN and pd.NA gaps, mixed date forms."""
    return pd.DataFrame({
        "symbol": [f"{tag}A", f"{tag}A", f"{tag}B"],
        "date": [pd.Timestamp("2024-01-02"), dt.date(2024, 1, 3), "2024-01-02"],
        "open": np.array([10.0, 10.5, 200.0]),
        "high": [10.8, 11.0, 201.0],
        "low": [9.9, 10.1, 198.5],
        "close": [10.5, 10.9, 199.0],
        "volume": [1000.0, np.nan, 50.0],
        "trades": pd.array([12, pd.NA, 3], dtype="Int64"),
        "value_mn": [0.0105, 0.02, np.nan],
        "source": ["replay", "replay", "live"],
        "produced_at": np.array([1704153600000, 1704240000000, 1704153600001], dtype=np.int64),
    })


def read_bars(eng: Engine, tag: str) -> pd.DataFrame:
    query = select(bars).where(bars.c.symbol.like(f"{tag}%")).order_by(bars.c.symbol, bars.c.date)
    return database.read_frame(eng, query)


def test_schema_creation_is_idempotent(db: Engine) -> None:
    database.migrate(db)
    database.migrate(db)
    found = inspect(db)
    assert set(tables.METADATA.tables) <= set(found.get_table_names())
    assert "ix_predictions_date" in {ix["name"] for ix in found.get_indexes("predictions")}
    assert "ix_model_events_at" in {ix["name"] for ix in found.get_indexes("model_events")}
    assert found.get_pk_constraint("dead_letters")["constrained_columns"] == ["topic", "partition", "offset"]


def test_sqlite_database_folder_is_created(tmp_path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "a" / "b", db_backend="sqlite", db_url=None)
    database.migrate(database.engine(settings))
    assert (tmp_path / "a" / "b" / "serving.db").is_file()


def test_same_rows_twice_leave_the_table_identical(db: Engine, tag: str) -> None:
    frame = bar_frame(tag)
    assert database.upsert(db, bars, frame) == 3
    first = read_bars(db, tag)
    assert database.upsert(db, bars, frame) == 3
    assert database.upsert(db, bars, frame.to_dict("records")) == 3
    again = read_bars(db, tag)
    pd.testing.assert_frame_equal(first, again)
    assert len(again) == 3
    assert all(ts.tzinfo == UTC for ts in again["updated_at"])


def test_missing_values_become_null_and_numpy_becomes_python(db: Engine, tag: str) -> None:
    database.upsert(db, bars, bar_frame(tag))
    nulls = database.read_frame(
        db, "SELECT volume IS NULL AS no_volume, trades IS NULL AS no_trades, value_mn IS NULL AS no_value"
            " FROM bars WHERE symbol LIKE :prefix ORDER BY symbol, date", prefix=f"{tag}%")
    flags = nulls[["no_volume", "no_trades", "no_value"]].astype(bool).to_numpy().tolist()
    assert flags == [[False, False, False], [True, True, False], [False, False, True]]
    stored = read_bars(db, tag).set_index(["symbol", "date"])
    assert stored.loc[(f"{tag}A", dt.date(2024, 1, 2)), "trades"] == 12
    assert stored.loc[(f"{tag}B", dt.date(2024, 1, 2)), "produced_at"] == 1704153600001


def prediction(tag: str, probability: float, scored_at: dt.datetime) -> dict:
    return {"symbol": f"{tag}X", "date": dt.date(2024, 5, 6), "probability": probability,
            "label": int(probability > 0.5), "model_name": "dse-direction", "model_version": "3",
            "feature_version": "f1", "produced_at": 1714953600000, "scored_at": scored_at}


def test_changed_value_replaces_unless_update_is_off(db: Engine, tag: str) -> None:
    t0 = dt.datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    t1 = dt.datetime(2024, 5, 6, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=6)))  # Asia/Dhaka, = 10:00 UTC
    query = select(predictions).where(predictions.c.symbol == f"{tag}X")

    database.upsert(db, predictions, [prediction(tag, 0.7, t0)])
    database.upsert(db, predictions, [prediction(tag, 0.2, t1)], update=False)
    kept = database.read_frame(db, query).iloc[0]
    assert (kept["probability"], kept["label"], kept["scored_at"]) == (0.7, 1, t0)

    database.upsert(db, predictions, [prediction(tag, 0.7, t1)])  # same values, later stamp: a replay
    assert database.read_frame(db, query).iloc[0]["scored_at"] == t0

    database.upsert(db, predictions, [prediction(tag, 0.2, t1)])
    replaced = database.read_frame(db, query)
    assert len(replaced) == 1
    assert (replaced.iloc[0]["probability"], replaced.iloc[0]["label"]) == (0.2, 0)
    assert replaced.iloc[0]["scored_at"] == t1 and replaced.iloc[0]["scored_at"].tzinfo == UTC


def test_repeated_key_in_one_call_collapses_like_sequential_writes(db: Engine, tag: str) -> None:
    at = dt.datetime(2024, 5, 6, 9, 0, tzinfo=UTC)
    rows = [prediction(tag, 0.9, at), prediction(tag, 0.1, at)]
    query = select(predictions.c.probability).where(predictions.c.symbol == f"{tag}X")
    assert database.upsert(db, predictions, rows, update=False) == 1
    assert database.read_frame(db, query)["probability"].tolist() == [0.9]
    assert database.upsert(db, predictions, rows) == 1
    assert database.read_frame(db, query)["probability"].tolist() == [0.1]


def test_empty_input_and_bad_rows(db: Engine, tag: str) -> None:
    assert database.upsert(db, bars, []) == 0
    assert database.upsert(db, bars, bar_frame(tag).iloc[0:0]) == 0
    with pytest.raises(ValueError, match="no column"):
        database.upsert(db, bars, bar_frame(tag).assign(sector="Bank"))
    with pytest.raises(StatementError, match="naive datetime"):
        database.upsert(db, predictions, [prediction(tag, 0.5, dt.datetime(2024, 5, 6, 9, 0))])


def test_dead_letters_keep_raw_bytes_exactly(db: Engine, tag: str) -> None:
    topic = f"{tag}.bars"
    rows = [
        {"topic": topic, "partition": 0, "offset": 0, "raw": b"\xff\xfe\x00{\"symbol\": \x81}", "reason": "not UTF-8"},
        {"topic": topic, "partition": 2, "offset": 2**40, "raw": os.urandom(1 << 20), "reason": "too large",
         "field": "value"},
        {"topic": topic, "partition": 1, "offset": 7, "raw": None, "reason": "empty record"},
    ]
    query = select(dead_letters).where(dead_letters.c.topic == topic).order_by(dead_letters.c.partition)
    assert database.upsert(db, dead_letters, rows) == 3
    first = database.read_frame(db, query)
    database.upsert(db, dead_letters, rows)
    again = database.read_frame(db, query)
    pd.testing.assert_frame_equal(first, again)
    assert again["raw"].tolist() == [rows[0]["raw"], None, rows[1]["raw"]]
    assert all(isinstance(raw, bytes) for raw in again["raw"].dropna())
    assert again["offset"].tolist() == [0, 7, 2**40]
    assert again["field"].tolist() == [None, None, "value"]


def test_hostile_text_and_extreme_numbers_round_trip(db: Engine, tag: str) -> None:
    """What COPY's text format escapes (tabs, newlines, backslashes, a literal \\N), kept exactly on every path."""
    texts = ["tab\tin", "line\nbreak\r\n", "back\\slash", "\\N", "", "\\x41", "ঢাকা \u00e9 \"quoted\", 'x'",
             "comma, semicolon; pipe|"]
    # raw_size only on odd rows and beyond 2**53: a gap must not turn the column into floats that lose digits
    rows = [{"topic": f"{tag}.{i}", "partition": i, "offset": -1 if i else 2**62, "raw": text.encode(),
             "reason": text, "field": text or None, **({"raw_size": 2**60 + i} if i % 2 else {})}
            for i, text in enumerate(texts)]
    database.upsert(db, dead_letters, rows)
    stored = database.read_frame(db, select(dead_letters).where(dead_letters.c.topic.like(f"{tag}.%"))
                                 .order_by(dead_letters.c.partition))
    assert stored["reason"].tolist() == texts
    assert stored["field"].tolist() == [t or None for t in texts]
    assert stored["raw"].tolist() == [t.encode() for t in texts]
    assert stored["offset"].tolist() == [2**62] + [-1] * (len(texts) - 1)
    with db.connect() as conn:  # as the driver returns them: a frame would make the gappy column floats again
        sizes = conn.execute(select(dead_letters.c.raw_size).where(dead_letters.c.topic.like(f"{tag}.%"))
                             .order_by(dead_letters.c.partition)).scalars().all()
    assert sizes == [2**60 + i if i % 2 else None for i in range(len(texts))]
    extremes = [5e-324, 1.7976931348623157e308, 0.1 + 0.2, -0.0, 1 / 3]
    frame = bar_frame(tag).iloc[[0] * len(extremes)].assign(
        date=[dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(len(extremes))], close=extremes)
    database.upsert(db, bars, frame)
    assert read_bars(db, tag)["close"].tolist() == extremes  # bit for bit: a score must not move in storage


def test_events_are_read_newest_first(db: Engine, tag: str) -> None:
    model = f"{tag}-model"
    database.record_event(db, "promoted", model, "1", source="dse promote", details={"b": 2, "a": 1})
    database.record_event(db, "reloaded", model, "1", source="stream")
    database.record_event(db, "promoted", model, "2", previous_version="1", source="dse promote",
                            details={"auc": 0.61})
    events = database.read_events(db)
    mine = events[events["model_name"] == model]
    assert mine["event"].tolist() == ["promoted", "reloaded", "promoted"]
    assert mine["version"].tolist() == ["2", "1", "1"]
    assert mine["previous_version"].tolist() == ["1", None, None]
    assert mine["details"].tolist() == ['{"auc": 0.61}', "{}", '{"a": 1, "b": 2}']
    assert json.loads(mine["details"].iloc[2]) == {"a": 1, "b": 2}
    assert mine["at"].is_monotonic_decreasing and all(ts.tzinfo == UTC for ts in mine["at"])
    assert len(database.read_events(db, limit=2)) == 2


def test_unreachable_database_names_url_and_fix() -> None:
    settings = Settings(_env_file=None, db_backend="postgres", db_url=None, host="127.0.0.1",
                        postgres_port=free_port())
    with pytest.raises(PlatformError) as caught:
        database.engine(settings)
    assert settings.serving_db_url in str(caught.value)
    assert "dse up" in str(caught.value) and "DSE_DB_URL" in str(caught.value)
