"""The topic records: what every producer writes validates against its one definition."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from dse_platform.config import Settings
from dse_platform.contracts import records
from dse_platform.contracts.records import BarRecord, DeadLetterRecord, PredictionRecord, TickRecord
from dse_platform.data.trading_calendar import DHAKA
from dse_platform.streams import live, replay
from dse_platform.streams.live_page import VALUE_FIELDS

DAY = dt.date(2025, 10, 22)
TICK_ROW = {"symbol": "1JANATAMF", "ltp": 2.9, "high": 3.0, "low": 2.8, "close": 2.9, "ycp": 2.8, "change": 0.1,
            "trades": 145, "value_mn": 3.47, "volume": 1201483}


def day_bars() -> pd.DataFrame:
    """One day as replay reads it from the store: Int64 trades with gaps, NaN value_mn."""
    return pd.DataFrame({
        "symbol": ["ACI", "GP"], "date": [DAY, DAY], "open": [210.5, 300.0], "high": [215.0, 301.2],
        "low": [209.1, 298.0], "close": [214.3, 300.5], "volume": [12034.0, np.nan],
        "trades": pd.array([88, pd.NA], dtype="Int64"), "value_mn": [2.58, np.nan]})


def test_replay_line_is_a_bar_record_in_field_order() -> None:
    (key, value), (_, gaps) = replay.encode_day(day_bars(), 1_700_000_000_000)
    bar = BarRecord.model_validate_json(value)
    assert key == "ACI" and list(json.loads(value)) == list(BarRecord.wire_fields())
    assert (bar.date, bar.close, bar.trades, bar.source, bar.produced_at) == (DAY, 214.3, 88, "replay",
                                                                                1_700_000_000_000)
    missing = BarRecord.model_validate_json(gaps)
    assert (missing.volume, missing.trades, missing.value_mn) == (None, None, None)


def test_tick_record_is_a_tick_in_the_pages_column_order() -> None:
    as_of = dt.datetime(2025, 10, 22, 8, 10, tzinfo=dt.UTC)
    value = json.dumps(live.tick_record(TICK_ROW, as_of, 123))
    tick = TickRecord.model_validate_json(value)
    assert list(json.loads(value)) == ["symbol", "date", *VALUE_FIELDS, "as_of", "source", "produced_at"]
    assert tick.as_of == as_of and tick.as_of.utcoffset() == dt.timedelta(hours=6) and tick.volume == 1201483


def test_schema_version_defaults_to_v1_is_checked_and_not_written() -> None:
    line = replay.encode_day(day_bars(), 1)[0][1]
    bar = BarRecord.model_validate_json(line)
    assert bar.schema_version == records.SCHEMA_VERSION == 1
    assert "schema_version" not in json.loads(bar.to_bytes()) and "schema_version" not in BarRecord.wire_fields()
    assert BarRecord.model_validate_json(json.dumps({**json.loads(line), "schema_version": 1})) == bar
    with pytest.raises(ValidationError, match="schema_version"):
        BarRecord.model_validate_json(json.dumps({**json.loads(line), "schema_version": 2}))


GOOD_BAR = {"symbol": "ACI", "date": DAY, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
            "trades": 3, "value_mn": None, "source": "replay", "produced_at": 1}
GOOD_TICK = {**TICK_ROW, "date": DAY, "as_of": dt.datetime(2025, 10, 22, 11, 0, tzinfo=DHAKA), "source": "live",
             "produced_at": 1}


@pytest.mark.parametrize(("change", "field"), [
    ({"close": "214.3"}, "close"),  # a number as text: no coercion
    ({"close": float("nan")}, "close"),
    ({"date": "22/10/2025"}, "date"),
    ({"source": "csv"}, "source"),
    ({"colour": "red"}, "colour"),  # unknown field
])
def test_bars_are_strict(change: dict, field: str) -> None:
    BarRecord(**GOOD_BAR)
    with pytest.raises(ValidationError) as info:
        BarRecord(**{**GOOD_BAR, **change})
    assert [e["loc"][0] for e in info.value.errors()] == [field]


@pytest.mark.parametrize(("model", "good", "required"), [
    (BarRecord, GOOD_BAR, records.BAR_REQUIRED), (TickRecord, GOOD_TICK, records.TICK_REQUIRED)])
def test_fields_a_consumer_requires_are_never_null_in_the_record(model: type, good: dict,
                                                                 required: tuple[str, ...]) -> None:
    model(**good)
    for name in required:
        with pytest.raises(ValidationError, match=name):
            model(**{**good, name: None})


def test_tick_as_of_must_carry_its_offset() -> None:
    with pytest.raises(ValidationError, match="as_of"):
        TickRecord(**{**GOOD_TICK, "as_of": dt.datetime(2025, 10, 22, 11, 0)})


def test_dead_letter_keeps_a_few_kib_and_the_original_size() -> None:
    raw = bytes(range(256)) * 40  # 10240 bytes, every byte value
    letter = json.loads(DeadLetterRecord.of(raw, "invalid_json", "stream", "dse.bars.v1", 2, 99).to_bytes())
    assert letter["raw"].encode("latin-1") == raw[:records.MAX_DEADLETTER_RAW_BYTES] and letter["raw_size"] == 10240
    assert (letter["topic"], letter["partition"], letter["offset"], letter["source"]) == ("dse.bars.v1", 2, 99,
                                                                                         "stream")
    assert letter["produced_at"] > 1_700_000_000_000


def test_live_dead_letter_keeps_the_whole_page_when_it_fits() -> None:
    page = b"<html>" + b"x" * 200_000
    letter = DeadLetterRecord.model_validate_json(live.deadletter_value(page, "header: expected X"))
    assert (letter.raw.encode("latin-1"), letter.raw_size, letter.reason) == (page, len(page), "header: expected X")


def test_prediction_probability_is_a_probability() -> None:
    with pytest.raises(ValidationError, match="probability"):
        PredictionRecord(symbol="ACI", date=DAY, probability=1.2, label=1, model_name="m", model_version="1",
                         feature_version="f1", produced_at=1, scored_at=2)


class Recorder:
    """A producer that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush_or_fail(self) -> None:
        pass


def test_stream_publishes_records_and_short_dead_letters() -> None:
    from dse_platform.serving.sink import BatchSink

    settings = Settings(_env_file=None)
    producer = Recorder()
    sink = BatchSink(settings, SimpleNamespace(current=None), None, producer)
    scored = pd.DataFrame({"symbol": ["ACI"], "date": np.array([DAY], dtype=object), "probability": [0.61],
                           "label": [1], "model_name": ["dse-direction"], "model_version": ["7"],
                           "feature_version": ["f1"], "produced_at": [1_700_000_000_000]})
    bad = pd.DataFrame({"topic": ["dse.bars.v1"], "partition": [0], "offset": [41], "raw": [b"{" * 70_000],
                        "raw_size": [70_000], "reason": ["too_large"], "field": [None]})
    sink._publish(scored, bad)
    (p_topic, p_key, p_value), (d_topic, d_key, d_value) = producer.sent
    prediction = PredictionRecord.model_validate_json(p_value)
    letter = DeadLetterRecord.model_validate_json(d_value)
    assert (p_topic, p_key, prediction.date, prediction.label, prediction.model_version) == (
        settings.predictions_topic, "ACI", DAY, 1, "7")
    assert (d_topic, d_key, len(letter.raw), letter.raw_size, letter.offset) == (
        settings.deadletter_topic, "dse.bars.v1", records.MAX_DEADLETTER_RAW_BYTES, 70_000, 41)
