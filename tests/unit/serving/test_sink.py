"""serving.sink.BatchSink on a SQLite database: late bars, retried writes, and the challenger scored in shadow."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import IntegrityError, OperationalError

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.errors import PlatformError
from dse_platform.model import features, scoring
from dse_platform.serving import database, sink
from dse_platform.serving.parsing import OUTPUT_FIELDS, typed
from dse_platform.serving.watcher import LoadedModel

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


# ---- the challenger scored in shadow beside production ---------------------------------------------


def _pipeline(seed: int) -> Pipeline:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, len(features.FEATURE_NAMES))), columns=features.FEATURE_NAMES)
    return Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression())]).fit(X, X.iloc[:, seed] > 0)


class Broken:
    """A challenger whose scoring fails: a pipeline of other steps than scaler + logistic regression, which raises."""

    steps = ()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raise ValueError("X has 3 features, but StandardScaler is expecting 31 features as input")


def _scored_bar(day: dt.date, close: float, seed: int) -> dict[str, Any]:
    values = np.random.default_rng(seed).normal(size=len(features.FEATURE_NAMES))
    return {**_bar(day, close), "kind": "bar", "final": True, "valid": True,
            "features": features.encode(pd.Series(values, index=features.FEATURE_NAMES))}


def _watching(version: str | None, model: Any = None) -> SimpleNamespace:
    return SimpleNamespace(current=None if version is None else LoadedModel(version, model))


PRODUCTION_MODEL, CHALLENGER_MODEL = _pipeline(1), _pipeline(2)
MON = dt.date(2024, 1, 15)


def _shadow_sink(eng: Engine, challenger: Any, producer: Producer | None = None) -> sink.BatchSink:
    return sink.BatchSink(Settings(_env_file=None), _watching("1", PRODUCTION_MODEL), eng, producer, backoff_s=0,
                          challenger=challenger)


def _rows(eng: Engine, table) -> pd.DataFrame:
    return database.read_frame(eng, table).sort_values(["role", "symbol", "date"], ignore_index=True)


def test_each_bar_is_scored_by_both_roles_with_the_same_scoring_and_only_production_is_published(
        eng: Engine, caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer()
    bars = [{**_scored_bar(MON, 10.6, i), "symbol": symbol} for i, symbol in enumerate(("AAA", "BBB", "CCC"))]
    shadow = _shadow_sink(eng, _watching("2", CHALLENGER_MODEL), producer)
    with caplog.at_level(logging.INFO, "dse.stream"):
        shadow(Batch(*bars), 1)
    stored = _rows(eng, tables.predictions)
    X = features.decode([b["features"] for b in bars])
    for role, version, model in (("challenger", "2", CHALLENGER_MODEL), ("production", "1", PRODUCTION_MODEL)):
        mine = stored[stored["role"] == role]
        assert mine["symbol"].tolist() == ["AAA", "BBB", "CCC"] and set(mine["model_version"]) == {version}
        np.testing.assert_array_equal(mine["probability"].to_numpy(), scoring.probabilities(model, X))
    assert not np.array_equal(stored["probability"][:3], stored["probability"][3:])
    published = [json.loads(v) for topic, _, v in producer.sent if topic == "dse.predictions.v1"]
    assert [(p["symbol"], p["model_version"]) for p in published] == [("AAA", "1"), ("BBB", "1"), ("CCC", "1")]
    assert all("role" not in p for p in published)
    assert "3 scored, model v1, shadow v2 3 scored" in caplog.text

    shadow(Batch(*bars), 2)  # a replayed batch: both roles' rows stay as they were, stamps included
    pd.testing.assert_frame_equal(_rows(eng, tables.predictions), stored)


@pytest.mark.parametrize("challenger", [None, _watching(None)], ids=["no challenger watcher", "alias unset"])
def test_without_a_challenger_only_production_is_scored(eng: Engine, challenger: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "dse.stream"):
        _shadow_sink(eng, challenger)(Batch(_scored_bar(MON, 10.6, 0)), 1)
    assert _rows(eng, tables.predictions)[["role", "model_version"]].values.tolist() == [["production", "1"]]
    assert "1 scored, model v1, shadow none," in caplog.text


def test_a_challenger_that_fails_to_score_is_recorded_once_and_production_is_written(
        eng: Engine, caplog: pytest.LogCaptureFixture) -> None:
    producer = Producer()
    shadow = _shadow_sink(eng, _watching("2", Broken()), producer)
    with caplog.at_level(logging.INFO, "dse.stream"):
        shadow(Batch(_scored_bar(MON, 10.6, 0)), 1)
        shadow(Batch(_scored_bar(dt.date(2024, 1, 16), 10.7, 1)), 2)
    stored = _rows(eng, tables.predictions)
    assert stored[["role", "date"]].values.tolist() == [["production", MON], ["production", dt.date(2024, 1, 16)]]
    assert len([t for t, _, _ in producer.sent if t == "dse.predictions.v1"]) == 2
    failed = database.read_frame(eng, tables.model_events)
    assert failed["event"].tolist() == ["shadow_failed"] and failed["version"].tolist() == ["2"]
    assert json.loads(failed["details"][0])["role"] == "challenger"
    assert "StandardScaler is expecting" in json.loads(failed["details"][0])["error"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "challenger version 2 failed to score" in errors[0].getMessage()
    assert caplog.text.count("shadow v2 failed") == 2


def test_a_challenger_failure_whose_event_cannot_be_written_still_leaves_production_alone(
        eng: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_: object, **__: object) -> None:
        raise OperationalError("INSERT INTO model_events", {}, Exception("database is locked"))

    monkeypatch.setattr(database, "record_event", down)
    _shadow_sink(eng, _watching("2", Broken()))(Batch(_scored_bar(MON, 10.6, 0)), 1)
    assert _rows(eng, tables.predictions)["role"].tolist() == ["production"]


def test_an_outcome_resolves_each_role_s_prediction_of_the_bar(eng: Engine) -> None:
    challenger = _watching("2", CHALLENGER_MODEL)
    shadow = _shadow_sink(eng, challenger)
    shadow(Batch(_scored_bar(MON, 10.6, 0)), 1)
    challenger.current = None  # the alias removed: the next bar is scored by production alone
    tue = dt.date(2024, 1, 16)
    shadow(Batch(_scored_bar(tue, 10.7, 1),
                 {"symbol": "AAA", "kind": "outcome", "date": MON, "next_date": tue, "actual": 1, "close": 10.6}), 2)
    wed = dt.date(2024, 1, 17)
    shadow(Batch({"symbol": "AAA", "kind": "outcome", "date": tue, "next_date": wed, "actual": 0, "close": 10.7}), 3)
    predictions = _rows(eng, tables.predictions).set_index(["role", "date"])
    outcomes = _rows(eng, tables.prediction_outcomes)
    assert outcomes[["role", "date", "model_version", "actual"]].values.tolist() == [
        ["challenger", MON, "2", 1], ["production", MON, "1", 1], ["production", tue, "1", 0]]
    for row in outcomes.itertuples():
        scored = predictions.loc[(row.role, row.date)]
        assert (row.probability, row.label) == (scored["probability"], scored["label"])
        assert row.correct == (row.label == row.actual)
