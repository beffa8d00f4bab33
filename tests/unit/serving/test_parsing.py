"""The stream's parse step never raises: any bytes become a typed bar or a dead letter with a named rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse_platform.contracts.records import MAX_DEADLETTER_RAW_BYTES
from dse_platform.data.rules import rule_names
from dse_platform.serving.parsing import BAD_KEY, OUTPUT_FIELDS, PARSED_FIELDS, parse_batch, records, typed

BARS = "dse.bars.v1"
GOOD = {"symbol": "GP", "date": "2025-08-20", "open": 250.0, "high": 252.0, "low": 249.0, "close": 251.5,
        "volume": 1000.0, "trades": 40, "value_mn": 0.25, "source": "replay", "produced_at": 1}


def parse(values: list[bytes | None], topic: str = BARS) -> pd.DataFrame:
    raw = pd.DataFrame({"value": values, "topic": topic, "partition": 0, "offset": range(len(values))})
    return pd.concat(list(parse_batch(iter([raw]), BARS)), ignore_index=True)


def encoded(**change: object) -> bytes:
    return json.dumps({**GOOD, **change}).encode()


@pytest.mark.parametrize(("value", "reason"), [
    (encoded().replace(b'"close": 251.5', b'"close": 1e400'), "bad_number"),  # overflows a float: inf
    (b"[" * 5000 + b"]" * 5000, "unparseable"),  # JSON nested deeper than the parser recurses
    (encoded(trades=2**70), "bad_number"),  # beyond Arrow's int64
    (encoded(volume=-(2**64)), "bad_number"),
    (encoded(produced_at=10**30), "bad_number"),
    (encoded(close=float("1e300")), "bad_number"),
])
def test_hostile_records_are_dead_letters(value: bytes, reason: str) -> None:
    frame = parse([value, encoded()])
    assert list(frame["kind"]) == ["bad", "bar"]
    assert frame.loc[0, "reason"] == reason and frame.loc[0, "symbol"] == BAD_KEY
    assert frame.loc[1, "close"] == 251.5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                                     max_size=4),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({k: st.one_of(st.just(v), st.integers(), st.floats(), st.text(max_size=12), st.none())
                           for k, v in GOOD.items()}).map(lambda v: json.dumps(v).encode()),
), min_size=1, max_size=8))
def test_any_bytes_become_a_bar_or_a_named_dead_letter(values: list[bytes]) -> None:
    frame = parse(values)
    assert list(frame.columns) == [name for name, _ in PARSED_FIELDS]
    bad = frame[frame["kind"] == "bad"]
    assert set(bad["reason"]) <= set(rule_names("wire"))
    assert (frame.loc[frame["kind"] == "bar", "symbol"] != BAD_KEY).all()
    assert len(frame) == len(values)  # on the bars topic every value is a bar or a dead letter


def test_dead_letters_keep_the_first_raw_bytes_and_the_original_size() -> None:
    huge, long_bad = b"x" * 1_000_000, b"{" + b" " * 10_000
    frame = parse([huge, long_bad, b"{not json"])
    assert list(frame["reason"]) == ["too_large", "invalid_json", "invalid_json"]
    assert [len(r) for r in frame["raw"]] == [MAX_DEADLETTER_RAW_BYTES, MAX_DEADLETTER_RAW_BYTES, 9]
    assert list(frame["raw_size"]) == [1_000_000, 10_001, 9]
    assert frame.loc[0, "raw"] == huge[:MAX_DEADLETTER_RAW_BYTES]


def test_a_good_bar_keeps_only_the_first_raw_bytes_for_a_later_dead_letter() -> None:
    padded = encoded()[:-1] + b" " * 6000 + b"}"  # valid JSON, under the value limit, over the raw limit
    frame = parse([padded, encoded()])
    assert list(frame["kind"]) == ["bar", "bar"]
    assert (len(frame.loc[0, "raw"]), frame.loc[0, "raw_size"]) == (MAX_DEADLETTER_RAW_BYTES, len(padded))
    assert (frame.loc[1, "raw"], frame.loc[1, "raw_size"]) == (encoded(), len(encoded()))


_MISSING = st.sampled_from([None, float("nan"), pd.NA])
_VALUES = {
    "string": st.one_of(_MISSING, st.text(max_size=5)), "binary": st.one_of(_MISSING, st.binary(max_size=5)),
    "date": st.one_of(_MISSING, st.dates()), "double": st.one_of(_MISSING, st.floats(allow_nan=False)),
    "long": st.one_of(_MISSING, st.integers(-(2**63), 2**63 - 1)), "int": st.one_of(_MISSING, st.integers(-9, 9)),
    "boolean": st.one_of(_MISSING, st.booleans()),
}


@given(st.lists(st.fixed_dictionaries({}, optional={name: _VALUES[kind] for name, kind in OUTPUT_FIELDS}),
                max_size=6))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_typed_gives_every_field_its_arrow_dtype_and_keeps_every_value(rows: list[dict]) -> None:
    """Whatever mix of missing markers and values the rows hold, each field gets the dtype Arrow sends as its
    Spark type, missing stays missing, and every other value is kept."""
    frame = typed(rows, OUTPUT_FIELDS)
    assert list(frame.columns) == [name for name, _ in OUTPUT_FIELDS] and len(frame) == len(rows)
    dtypes = {"double": "float64", "long": "Int64", "int": "Int32", "boolean": "boolean"}
    for name, kind in OUTPUT_FIELDS:
        assert str(frame[name].dtype) == dtypes.get(kind, "object"), name
        for row, got in zip(rows, frame[name].tolist(), strict=True):
            given_value = row.get(name)
            if given_value is None or given_value is pd.NA or given_value != given_value:
                assert got is None or got is pd.NA or got != got, name
            else:
                assert got == given_value, name


def _same_value(a: object, b: object) -> bool:
    return type(a) is type(b) and (a is b or (a != a and b != b) or a == b)


@given(st.lists(st.fixed_dictionaries({}, optional={name: _VALUES[kind] for name, kind in OUTPUT_FIELDS}),
                max_size=6))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_records_reads_a_frame_as_to_dict_does(rows: list[dict]) -> None:
    """The state step's fast ``records`` gives what pandas' ``to_dict("records")`` gives: the same plain Python
    values of the same types (nullable integers and booleans, NaN, objects with None), for the typed frames it
    reads and for a plain numpy frame like the features' (and numpy scalars held in an object column)."""
    numpy_frame = pd.DataFrame({"x": [float(len(r)) for r in rows], "n": [len(r) for r in rows],
                                "ok": [bool(len(r) % 2) for r in rows],
                                "boxed": pd.Series([np.int64(len(r)) for r in rows], dtype=object)})
    for frame in (typed(rows, OUTPUT_FIELDS), numpy_frame):
        fast, slow = records(frame), frame.to_dict("records")
        assert len(fast) == len(slow)
        for got, want in zip(fast, slow, strict=True):
            assert list(got) == list(want)
            assert all(_same_value(got[k], want[k]) for k in want), (got, want)

