"""serving.sink.BatchSink on a SQLite database: late bars against the stored ones, and retried writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import IntegrityError, OperationalError

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.errors import PlatformError
from dse_platform.serving import database, sink
from dse_platform.serving.parsing import OUTPUT_FIELDS, typed

BARS = "dse.bars.v1"
THU, SUN = dt.date(2024, 1, 11), dt.date(2024, 1, 14)


def _bar(day: dt.date, close: float, **change: Any) -> dict[str, Any]:
    return {"symbol": "AAA", "date": day, "open": close, "high": close, "low": close, "close": close,
            "volume": 1000.0, "trades": 10, "value_mn": 1.0, "source": "replay", "produced_at": 1, **change}


def _late(day: dt.date, close: float, offset: int, **change: Any) -> dict[str, Any]:
    return {**_bar(day, close, produced_at=99, **change), "kind": "late", "field": "date", "raw": b"{bar}",
            "raw_size": 5000, "topic": BARS, "partition": 0, "offset": offset}


class Batch:
    """What foreachBatch hands the sink: a DataFrame of the state operator's output rows."""

    def __init__(self, *rows: dict[str, Any]) -> None:
        self.frame = typed(list(rows), OUTPUT_FIELDS)

    def toPandas(self) -> pd.DataFrame:
        return self.frame.copy()


class Watcher:
    current = None  # no model: nothing is scored, the rest is written


class Producer:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.failures = failures

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush_or_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise PlatformError("Kafka did not acknowledge every record", "check the broker")


@pytest.fixture
def eng(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    database.migrate(engine)
    database.upsert(engine, tables.bars, [_bar(THU, 10.0), _bar(SUN, 10.5)])
    yield engine
    engine.dispose()


def _sink(eng: Engine, producer: Producer | None = None) -> sink.BatchSink:
    return sink.BatchSink(Settings(_env_file=None), Watcher(), eng, producer, backoff_s=0)


def test_a_late_bar_identical_to_the_stored_one_is_resent_a_different_or_unknown_one_a_dead_letter(
        eng: Engine, caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer()
    batch = Batch(_late(THU, 10.0, 1), _late(SUN, 10.5, 2, trades=11), _late(dt.date(2024, 1, 10), 9.0, 3),
                  {"symbol": "AAA", "date": SUN, "kind": "resent", "topic": BARS, "partition": 0, "offset": 4})
    with caplog.at_level(logging.INFO, "dse.stream"):  # per-batch progress is INFO, visible by default
        _sink(eng, producer)(batch, 7)
    dead = database.read_frame(eng, tables.dead_letters).sort_values("offset")
    assert list(zip(dead["offset"], dead["reason"], dead["field"], dead["raw_size"], strict=True)) == [
        (2, "duplicate", "date", 5000), (3, "out_of_order", "date", 5000)]
    assert "batch 7: 4 in, 2 bad, 2 resent, 0 scored" in caplog.text
    stored = database.read_frame(eng, tables.bars).sort_values("date")
    assert list(stored["trades"]) == [10, 10] and list(stored["produced_at"]) == [1, 1]  # the stored bars stand
    letters = [json.loads(value) for topic, _, value in producer.sent if topic == Settings(_env_file=None)
               .deadletter_topic]
    assert [(d["offset"], d["raw"], d["raw_size"]) for d in letters] == [(2, "{bar}", 5000), (3, "{bar}", 5000)]


def test_a_write_failing_twice_with_an_operational_error_is_retried(eng: Engine,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    upsert, calls = database.upsert, []

    def flaky(conn, table, rows, update: bool = True) -> int:
        calls.append(table.name)
        if calls.count("bars") <= 2 and table is tables.bars:
            raise OperationalError("INSERT INTO bars", {}, Exception("database is locked"))
        return upsert(conn, table, rows, update)

    monkeypatch.setattr(database, "upsert", flaky)
    bar = {**_bar(dt.date(2024, 1, 15), 10.6), "kind": "bar", "final": True, "valid": False}
    _sink(eng)(Batch(bar), 1)
    assert calls.count("bars") == 3
    assert dt.date(2024, 1, 15) in set(database.read_frame(eng, tables.bars)["date"])


def test_a_write_that_keeps_failing_raises_after_the_last_attempt(eng: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def down(*_: object, **__: object) -> int:
        calls.append(1)
        raise OperationalError("INSERT INTO bars", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(database, "upsert", down)
    with pytest.raises(OperationalError, match="server closed the connection"):
        _sink(eng)(Batch({**_bar(SUN, 10.5), "kind": "bar", "final": True, "valid": False}), 1)
    assert len(calls) == sink.ATTEMPTS


def test_an_error_that_is_no_outage_is_not_retried(eng: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(*_: object, **__: object) -> int:
        calls.append(1)
        raise IntegrityError("INSERT INTO bars", {}, Exception("NOT NULL constraint failed: bars.open"))

    monkeypatch.setattr(database, "upsert", broken)
    with pytest.raises(IntegrityError):
        _sink(eng)(Batch({**_bar(SUN, 10.5), "kind": "bar", "final": True, "valid": False}), 1)
    assert len(calls) == 1


def test_a_publish_kafka_did_not_acknowledge_is_sent_again(eng: Engine) -> None:
    producer = Producer(failures=1)
    _sink(eng, producer)(Batch(_late(dt.date(2024, 1, 10), 9.0, 3)), 1)
    assert [(topic, key, json.loads(value)["offset"]) for topic, key, value in producer.sent] == [
        ("dse.deadletter.v1", BARS, 3)] * 2
