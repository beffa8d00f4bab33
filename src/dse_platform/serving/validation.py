"""Record-level validation of what arrives on the bars and ticks topics.

The streaming job calls `parse` on each raw Kafka value of a batch: a good
record becomes a typed bar (a tick becomes a bar-so-far), a bad one a dead letter
with the rule that rejected it and the offending field. Rule names and limits come
from :mod:`dse_platform.data.rules`, the declaration the ingest uses too, so a bar
is refused for the same reason on both paths; ``duplicate`` and ``out_of_order``
need the instrument's history and are decided in :mod:`state`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from dse_platform.contracts.records import BAR_REQUIRED, SCHEMA_VERSION, TICK_REQUIRED
from dse_platform.data.rules import MAX_VALUE_BYTES, PRICE_COLS, SYMBOL_PATTERN, latest_allowed_date, rule_names

SYMBOL_RE = re.compile(SYMBOL_PATTERN)
WIRE_RULES = rule_names("wire")

#: larger than any DSE price, volume or turnover, and inside float64's exact integers and Arrow's int64
MAX_ABS_NUMBER = 2**53


class Rejected(Exception):
    """A wire record refused by the named rule; ``field`` is the offending field (None for the whole value)."""

    def __init__(self, reason: str, field: str | None, detail: str) -> None:
        if reason not in WIRE_RULES:
            raise ValueError(f"rule {reason!r} is not a wire rule; declare it in data/rules.py")
        self.reason, self.field, self.detail = reason, field, detail
        super().__init__(f"{reason}: {detail}")


def _number(record: dict[str, Any], name: str, required: bool) -> float | None:
    value = record.get(name)
    if value is None:
        if required:
            raise Rejected("missing_field", name, f"'{name}' is missing or null")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected("bad_number", name, f"'{name}' is {type(value).__name__} {str(value)[:40]!r}, not a number")
    if isinstance(value, int) and abs(value) > MAX_ABS_NUMBER:
        raise Rejected("bad_number", name, f"'{name}' has {len(str(abs(value)))} digits, beyond any DSE figure")
    if not math.isfinite(value):
        raise Rejected("bad_number", name, f"'{name}' is {value}, not a finite number")
    if abs(value) > MAX_ABS_NUMBER:
        raise Rejected("bad_number", name, f"'{name}' is {value:g}, beyond any DSE figure")
    return float(value)


def _decode(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise Rejected("empty_value", None, "the record has no value")
    if len(value) > MAX_VALUE_BYTES:
        raise Rejected("too_large", None, f"{len(value)} bytes (a bar is under {MAX_VALUE_BYTES})")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("not_utf8", None, f"not UTF-8 at byte {exc.start}") from exc
    try:
        # NaN/Infinity are not JSON: refuse them at parse time rather than let them in as floats
        record = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except ValueError as exc:
        raise Rejected("invalid_json", None, str(exc)[:200]) from exc
    if not isinstance(record, dict):
        raise Rejected("not_an_object", None, f"a JSON {type(record).__name__}, not an object")
    version = record.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise Rejected("unknown_schema_version", "schema_version",
                       f"schema_version {version!r}; this job reads version {SCHEMA_VERSION}")
    return record


def parse(value: bytes | None, kind: str, today: dt.date) -> dict[str, Any] | None:
    """One wire record (``kind`` "bar" or "tick") as a bar dict, or `Rejected`.

    A tick of an instrument that has not traded yet today (LTP 0, DSE's "--") is not
    a bar and not an error: it returns None and the job counts it as idle.
    """
    record = _decode(value)
    for name in BAR_REQUIRED if kind == "bar" else TICK_REQUIRED:
        if record.get(name) is None:
            raise Rejected("missing_field", name, f"'{name}' is missing or null")
    symbol = record["symbol"]
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise Rejected("bad_symbol", "symbol", f"symbol {str(symbol)[:40]!r} is not a DSE trading code")
    try:
        day = dt.date.fromisoformat(record["date"]) if isinstance(record["date"], str) else None
    except ValueError:
        day = None
    if day is None:
        raise Rejected("bad_date", "date", f"date {str(record['date'])[:40]!r} is not YYYY-MM-DD")
    if kind == "bar":
        prices = {c: _number(record, c, True) for c in PRICE_COLS}
    else:
        last = _number(record, "ltp", True)
        if last == 0 and not record.get("high"):
            return None
        prices = {"open": _number(record, "open", False) or last, "high": _number(record, "high", True),
                  "low": _number(record, "low", True), "close": last}
    bad = [c for c in PRICE_COLS if prices[c] <= 0]
    if bad:
        raise Rejected("non_positive_price", bad[0], f"{bad[0]} is {prices[bad[0]]}, prices must be positive")
    if prices["high"] < prices["low"]:
        raise Rejected("high_below_low", "high", f"high {prices['high']} < low {prices['low']}")
    latest = latest_allowed_date(today)
    if day > latest:
        raise Rejected("future_date", "date", f"date {day} is after {latest} (today in Asia/Dhaka: {today})")
    volume = _number(record, "volume", False)
    if volume is not None and volume < 0:
        raise Rejected("bad_number", "volume", f"volume {volume} is negative")
    trades = _number(record, "trades", False)
    value_mn = _number(record, "value_mn", False)
    produced_at = _number(record, "produced_at", False)
    return {"symbol": symbol, "date": day, **prices, "volume": volume,
            "trades": None if trades is None else int(trades), "value_mn": value_mn,
            "source": str(record.get("source") or ("replay" if kind == "bar" else "live")),
            "produced_at": int(produced_at) if produced_at is not None else 0}
