"""Wire validation: each rule fires, alone, on a record built to break exactly that rule."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from dse_platform.data.rules import MAX_VALUE_BYTES, latest_allowed_date
from dse_platform.serving import validation
from dse_platform.serving.validation import Rejected, parse

TODAY = dt.date(2025, 10, 22)  # a Wednesday session
GOOD_BAR: dict[str, Any] = {"symbol": "BATBC", "date": "2025-10-21", "open": 10.0, "high": 11.0, "low": 9.5,
                            "close": 10.5, "volume": 100.0, "trades": 5, "value_mn": 0.1, "source": "replay",
                            "produced_at": 1}
GOOD_TICK: dict[str, Any] = {"symbol": "BATBC", "date": "2025-10-22", "ltp": 10.5, "high": 11.0, "low": 9.5,
                             "volume": 100, "trades": 5, "value_mn": 0.1, "source": "live", "produced_at": 2}


def bar(**change: Any) -> bytes:
    return json.dumps({**GOOD_BAR, **change}).encode()


def without(name: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD_BAR.items() if k != name}).encode()


#: (value, rule, field): each value breaks one rule and nothing else the validator checks before it
CASES: list[tuple[bytes | None, str, str | None]] = [
    (b"", "empty_value", None),
    (None, "empty_value", None),
    (b" " * (MAX_VALUE_BYTES + 1), "too_large", None),
    (b'{"symbol": "\xff"}', "not_utf8", None),
    (b"{not json", "invalid_json", None),
    (b'{"symbol": "BATBC", "date": "2025-10-21", "open": NaN, "high": 1, "low": 1, "close": 1}', "invalid_json",
     None),
    (b"[1, 2, 3]", "not_an_object", None),
    (bar(schema_version=2), "unknown_schema_version", "schema_version"),
    (without("close"), "missing_field", "close"),
    (bar(low=None), "missing_field", "low"),
    (bar(symbol="batbc"), "bad_symbol", "symbol"),
    (bar(symbol=42), "bad_symbol", "symbol"),
    (bar(date="21/10/2025"), "bad_date", "date"),
    (bar(date="2025-02-30"), "bad_date", "date"),
    (bar(close="10.5"), "bad_number", "close"),
    (bar(high=True), "bad_number", "high"),
    (bar(volume=-1), "bad_number", "volume"),
    (bar(low=0), "non_positive_price", "low"),
    (bar(open=-1.0), "non_positive_price", "open"),
    (bar(high=9.0), "high_below_low", "high"),
    (bar(date=str(latest_allowed_date(TODAY) + dt.timedelta(days=1))), "future_date", "date"),
]


def test_the_good_records_pass() -> None:
    assert parse(bar(), "bar", TODAY) == {**GOOD_BAR, "date": dt.date(2025, 10, 21)}
    tick = parse(json.dumps(GOOD_TICK).encode(), "tick", TODAY)
    assert tick is not None and (tick["open"], tick["close"], tick["date"]) == (10.5, 10.5, TODAY)


@pytest.mark.parametrize(("value", "rule", "field"), CASES, ids=[f"{rule}-{n}" for n, (_, rule, _) in enumerate(CASES)])
def test_each_rule_rejects_with_its_reason_and_field(value: bytes | None, rule: str, field: str | None) -> None:
    with pytest.raises(Rejected) as info:
        parse(value, "bar", TODAY)
    assert (info.value.reason, info.value.field) == (rule, field)
    assert str(info.value).startswith(f"{rule}: ")


def test_every_record_level_wire_rule_has_a_case() -> None:
    # duplicate and out_of_order need the instrument's history: serving.state decides them; unparseable is the
    # stream's catch-all for errors no rule names (tests/unit/serving/test_parsing.py)
    assert {rule for _, rule, _ in CASES} == set(validation.WIRE_RULES) - {"duplicate", "out_of_order", "unparseable"}


def test_a_tick_missing_its_last_price_names_it() -> None:
    value = json.dumps({k: v for k, v in GOOD_TICK.items() if k != "ltp"}).encode()
    with pytest.raises(Rejected) as info:
        parse(value, "tick", TODAY)
    assert (info.value.reason, info.value.field) == ("missing_field", "ltp")


def test_an_untraded_tick_is_idle_not_an_error() -> None:
    assert parse(json.dumps({**GOOD_TICK, "ltp": 0, "high": 0, "low": 0}).encode(), "tick", TODAY) is None


def test_an_undeclared_rule_cannot_be_raised() -> None:
    with pytest.raises(ValueError, match=r"'not_a_rule' is not a wire rule; declare it in data/rules\.py"):
        Rejected("not_a_rule", None, "x")
