"""Record-level validation of what arrives on the bars and ticks topics.

The streaming job calls `parse_records` on each batch of raw Kafka values: a good
record becomes a typed bar (a tick becomes a bar-so-far), a bad one a dead letter
with the rule that rejected it and the offending field. Rule names and limits are
the ingest's where the rule is the same (``missing_field``, ``bad_number``,
``non_positive_price``, ``high_below_low``, ``future_date``, ``duplicate``);
the rest exist only for wire records (``invalid_json``, ``not_utf8`` ...).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from dse_platform.data.quality import PRICE_COLS

SCHEMA_VERSION = 1
#: a bar is ~200 bytes of JSON; anything this big is not one
MAX_VALUE_BYTES = 64 * 1024
#: a date more than this far after "today" (Asia/Dhaka) is a future date (1 day of clock skew allowed)
FUTURE_SLACK = dt.timedelta(days=1)
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9&()._-]{0,29}$")
WIRE_RULES = ("empty_value", "too_large", "not_utf8", "invalid_json", "not_an_object", "unknown_schema_version",
              "missing_field", "bad_symbol", "bad_date", "bad_number", "non_positive_price", "high_below_low",
              "future_date", "duplicate", "out_of_order")

#: the record's field -> how it maps onto a bar, per topic kind
BAR_REQUIRED = ("symbol", "date", "open", "high", "low", "close")
TICK_REQUIRED = ("symbol", "date", "ltp", "high", "low")


class Rejected(Exception):
    def __init__(self, reason: str, field: str | None, detail: str) -> None:
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
    if not math.isfinite(value):
        raise Rejected("bad_number", name, f"'{name}' is {value}, not a finite number")
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
    if day > today + FUTURE_SLACK:
        raise Rejected("future_date", "date", f"date {day} is after today ({today}, Asia/Dhaka)")
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
