"""Per-instrument state as pure functions: the last bars of each instrument, advanced by records."""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.model import features
from dse_platform.serving.parsing import BAD_KEY, BAR_COLUMNS, OUTPUT_FIELDS, records, typed

#: what makes two final bars of one date the same bar: a replay run again re-stamps produced_at, nothing else
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "value_mn")

_ORIGIN = ("raw", "raw_size", "topic", "partition", "offset")

#: a batch's records in arrival order per topic, bars first (sorted() is stable: ties keep the batch's order)
_ARRIVAL = operator.itemgetter("kind", "offset")


def _same(a: Any, b: Any) -> bool:
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two bars carry the same values (missing equals missing): a re-sent bar, not a correction."""
    return all(_same(a[c], b[c]) for c in VALUE_COLUMNS)


def _dead(row: dict[str, Any], reason: str, field: str | None) -> dict[str, Any]:
    return {"symbol": row["symbol"], "kind": "bad", "reason": reason, "field": field,
            **{c: row[c] for c in _ORIGIN}}


def _repeat(bars: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """What a final bar for a date the window has passed becomes; None when it is no repeat.

    A date older than the window cannot be compared here: ``late`` leaves it to the sink, which
    compares it with the stored bar. A date the window holds final: ``resent`` when identical
    (counted, nothing re-emitted), else a ``duplicate`` dead letter.
    """
    if row["date"] < bars[0]["date"]:
        return {**{c: row[c] for c in BAR_COLUMNS}, "kind": "late", "field": "date", **{c: row[c] for c in _ORIGIN}}
    seen = next((b for b in bars if b["date"] == row["date"] and b["final"]), None)
    if seen is None:
        return None
    if same_values(seen, row):
        return {"symbol": row["symbol"], "date": row["date"], "kind": "resent",
                **{c: row[c] for c in ("topic", "partition", "offset")}}
    return _dead(row, "duplicate", "date")


def advance(window: list[dict[str, Any]], rows: pd.DataFrame, calendar: TradingCalendar
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Apply one batch of an instrument's records to its window: (new window, output rows).

    Records apply in arrival order. Bars from the bars topic are final: a second one
    for a date in the window is ``resent`` when its values are identical (a replay run
    again), else a ``duplicate``; one older than the window is ``late`` (the sink decides
    against the stored bar); any other record older than the window's last bar is
    ``out_of_order``. A tick updates the bar-so-far of its date (or starts it); a final
    bar replaces it.
    Output: every bar added or changed, with its features (a JSON object by name,
    `features.encode`), and the outcome of the previous bar whenever a final bar
    arrives for the next session.
    """
    bars = list(window)
    out: list[dict[str, Any]] = []
    changed: set[dt.date] = set()
    outcomes: list[dict[str, Any]] = []
    # arrival order per topic (bars first): the outcome must not depend on where batches split
    for row in sorted(records(rows), key=_ARRIVAL):
        last = bars[-1] if bars else None
        record = {c: row[c] for c in BAR_COLUMNS}
        record["final"] = row["kind"] == "bar"
        if last is not None and row["date"] <= last["date"]:
            repeat = _repeat(bars, row) if record["final"] else None
            if repeat is not None:
                out.append(repeat)
                continue
            if row["date"] < last["date"]:
                out.append(_dead(row, "out_of_order", "date"))
                continue
            if last["final"]:
                continue  # a tick after the day's final bar adds nothing
            if row["kind"] == "tick":
                record["open"] = last["open"]  # the page has no open: the day's first snapshot stands in
            bars[-1] = record
        else:
            if row["kind"] == "tick":
                record["open"] = record["open"] or record["close"]
            bars.append(record)
        changed.add(row["date"])
        if record["final"] and len(bars) >= 2 and bars[-2]["final"]:
            prev = bars[-2]
            nxt = calendar.next_session(prev["date"])
            if nxt == record["date"]:
                outcomes.append({"symbol": record["symbol"], "kind": "outcome", "date": prev["date"],
                                 "next_date": record["date"], "actual": int(record["close"] > prev["close"]),
                                 "close": prev["close"]})
    if changed:
        frame = pd.DataFrame({c: [b[c] for b in bars] for c in features.INPUT_COLUMNS})
        # rows as plain dicts: a DataFrame row (iloc) costs ~60 us to build and each of its values ~7 us to read,
        # which was half of the state step; `features.encode` reads a dict by name just the same
        feats = records(features.compute(frame))
        for i in (i for i, bar in enumerate(bars) if bar["date"] in changed):
            valid = bool(feats[i]["valid"])
            out.append({**bars[i], "kind": "bar", "valid": valid,
                        "features": features.encode(feats[i]) if valid else None})
    return bars[-features.LOOKBACK:], out + outcomes


def _encode_window(bars: list[dict[str, Any]]) -> str:
    return json.dumps([{**b, "date": b["date"].isoformat()} for b in bars])


def _decode_window(text: str) -> list[dict[str, Any]]:
    return [{**b, "date": dt.date.fromisoformat(b["date"])} for b in json.loads(text)]


def make_state_function(calendar: TradingCalendar):
    """The applyInPandasWithState body, closing over the trading calendar."""
    def update(key: tuple, frames: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        rows = pd.concat(list(frames), ignore_index=True)
        if key[0] == BAD_KEY:
            yield typed(rows, OUTPUT_FIELDS)
            return
        window = _decode_window(state.get[0]) if state.exists else []
        window, out = advance(window, rows, calendar)
        state.update((_encode_window(window),))
        yield typed(out, OUTPUT_FIELDS)

    return update
