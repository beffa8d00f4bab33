"""serving.state.advance: how bars and ticks move an instrument's window, and what comes out."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dse_platform.data.trading_calendar import weekday_calendar
from dse_platform.model import features
from dse_platform.serving.state import advance
from tests.unit.model.synthetic import random_bars

CALENDAR = weekday_calendar()
THU, SUN, MON = dt.date(2024, 1, 11), dt.date(2024, 1, 14), dt.date(2024, 1, 15)


def _record(day: dt.date, close: float, kind: str = "bar", offset: int = 0, **prices: float) -> dict[str, Any]:
    return {"symbol": "AAA", "date": day, "open": prices.get("open", close), "high": prices.get("high", close),
            "low": prices.get("low", close), "close": close, "volume": 1000.0, "trades": 10, "value_mn": 1.0,
            "source": kind, "produced_at": 0, "kind": kind, "offset": offset, "raw": b"{}", "raw_size": 2,
            "topic": f"dse.{kind}s.v1", "partition": 0}


def _window(*records: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored window: the bar columns of each record and whether it was final."""
    bar_keys = ("symbol", "date", "open", "high", "low", "close", "volume", "trades", "value_mn", "source",
                "produced_at")
    return [{**{k: r[k] for k in bar_keys}, "final": r["kind"] == "bar"} for r in records]


def _run(window: list[dict[str, Any]], *records: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    return advance(window, pd.DataFrame(list(records)), CALENDAR)


def test_first_bars_are_appended_and_outcomes_follow_each_next_session() -> None:
    window, out = _run([], _record(THU, 10.0, offset=1), _record(SUN, 10.5, offset=2), _record(MON, 10.5, offset=3))
    assert [(b["date"], b["close"], b["final"]) for b in window] == [(THU, 10.0, True), (SUN, 10.5, True),
                                                                      (MON, 10.5, True)]
    bars = [o for o in out if o["kind"] == "bar"]
    assert [b["date"] for b in bars] == [THU, SUN, MON]
    assert not any(b["valid"] for b in bars) and all(b["features"] is None for b in bars)  # no full lookback yet
    outcomes = [(o["date"], o["next_date"], o["actual"]) for o in out if o["kind"] == "outcome"]
    assert outcomes == [(THU, SUN, 1), (SUN, MON, 0)]  # Thursday's next session is Sunday; equal is not up


def test_a_tick_updates_the_days_bar_so_far_and_keeps_its_first_open() -> None:
    window, _ = _run([], _record(THU, 10.0))
    window, out = _run(window, _record(SUN, 10.6, "tick", 1, open=10.5, high=10.7, low=10.4))
    window, out = _run(window, _record(SUN, 11.2, "tick", 2, open=11.2, high=11.3, low=10.4))
    last = window[-1]
    assert (last["date"], last["open"], last["high"], last["close"], last["final"]) == (SUN, 10.5, 11.3, 11.2, False)
    assert len(window) == 2
    assert [(o["kind"], o["date"], o["close"]) for o in out] == [("bar", SUN, 11.2)]  # a tick resolves nothing


def test_a_final_bar_replaces_the_bar_so_far_and_resolves_the_previous_bar() -> None:
    window = _window(_record(THU, 10.0), _record(SUN, 11.2, "tick", open=10.5))
    window, out = _run(window, _record(SUN, 9.8, offset=5, open=10.4, high=10.6, low=9.7))
    assert len(window) == 2
    assert (window[-1]["open"], window[-1]["high"], window[-1]["close"], window[-1]["final"]) == (10.4, 10.6, 9.8,
                                                                                                   True)
    assert [(o["date"], o["actual"], o["close"]) for o in out if o["kind"] == "outcome"] == [(THU, 0, 10.0)]


def test_a_tick_after_the_final_bar_is_ignored() -> None:
    window = _window(_record(THU, 10.0), _record(SUN, 10.5))
    after, out = _run(window, _record(SUN, 12.0, "tick", 7))
    assert after == window and out == []


def test_within_a_batch_bars_apply_before_ticks() -> None:
    window, out = _run(_window(_record(THU, 10.0)), _record(SUN, 12.0, "tick", 1), _record(SUN, 10.5, "bar", 9))
    assert (window[-1]["close"], window[-1]["final"]) == (10.5, True)
    assert [o["kind"] for o in out] == ["bar", "outcome"]


def test_a_second_final_bar_for_a_date_is_a_duplicate() -> None:
    window = _window(_record(THU, 10.0), _record(SUN, 10.5))
    after, out = _run(window, _record(SUN, 10.7, offset=8), _record(THU, 10.1, offset=9))
    assert after == window
    assert [(o["kind"], o["reason"], o["field"], o["offset"]) for o in out] == [("bad", "duplicate", "date", 8),
                                                                                ("bad", "duplicate", "date", 9)]


def test_a_final_bar_older_than_the_window_is_late_and_a_tick_out_of_order() -> None:
    window = _window(_record(SUN, 10.5), _record(MON, 10.6))
    after, out = _run(window, _record(THU, 10.0, offset=3), _record(THU, 10.0, "tick", 4))
    assert after == window
    assert [(o["kind"], o.get("reason"), o["offset"]) for o in out] == [("late", None, 3), ("bad", "out_of_order", 4)]
    late = out[0]
    assert (late["symbol"], late["date"], late["close"], late["raw"], late["raw_size"]) == ("AAA", THU, 10.0, b"{}", 2)


def test_an_identical_final_bar_again_is_resent_not_a_dead_letter_nor_re_emitted() -> None:
    window = _window(_record(THU, 10.0), _record(SUN, 10.5))
    again = {**_record(SUN, 10.5, offset=8), "produced_at": 99, "source": "live"}  # only the stamp differs
    after, out = _run(window, _record(THU, 10.0, offset=7), again)
    assert after == window
    assert [(o["kind"], o["date"], o["offset"]) for o in out] == [("resent", THU, 7), ("resent", SUN, 8)]


def test_missing_values_equal_missing_values_when_comparing_a_resent_bar() -> None:
    window = _window({**_record(THU, 10.0), "volume": np.nan, "trades": None})
    _, out = _run(window, {**_record(THU, 10.0, offset=2), "volume": None, "trades": pd.NA})
    assert [o["kind"] for o in out] == ["resent"]
    _, out = _run(window, _record(THU, 10.0, offset=3))  # a volume where the first had none
    assert [(o["kind"], o["reason"]) for o in out] == [("bad", "duplicate")]


@pytest.mark.parametrize("change", [{"open": 9.9}, {"high": 10.2}, {"low": 9.0}, {"close": 10.1},
                                    {"volume": 1001.0}, {"trades": 11}, {"value_mn": 1.5}])
def test_a_different_final_bar_for_a_date_in_the_window_is_a_duplicate(change: dict[str, float]) -> None:
    window = _window(_record(THU, 10.0), _record(SUN, 10.5))
    _, out = _run(window, {**_record(THU, 10.0, offset=4), **change})
    assert [(o["kind"], o["reason"], o["field"], o["raw_size"]) for o in out] == [("bad", "duplicate", "date", 2)]


def test_resent_and_late_bars_give_the_same_output_across_batch_boundaries() -> None:
    records = [_record(THU, 10.0, offset=1), _record(SUN, 10.5, offset=2), _record(THU, 10.0, offset=3),
               _record(SUN, 10.6, offset=4)]
    _, whole = _run([], *records)
    window, first = _run([], *records[:2])
    _, second = _run(window, *records[2:])
    def order(rows: list[dict]) -> list[dict]:
        return sorted(rows, key=lambda o: (o["kind"], str(o.get("date")), o.get("offset", -1)))

    assert order(first + second) == order(whole)
    assert [(o["kind"], o.get("reason")) for o in second] == [("resent", None), ("bad", "duplicate")]


def test_no_outcome_when_a_session_is_missing_between_bars() -> None:
    _, out = _run(_window(_record(THU, 10.0)), _record(MON, 11.0))  # Sunday was skipped
    assert [o["kind"] for o in out] == ["bar"]


def test_the_window_keeps_lookback_bars_and_still_gives_the_offline_features() -> None:
    history = random_bars("AAA", features.LOOKBACK + 10, seed=5)
    records = [_record(r.date, r.close, offset=i, open=r.open, high=r.high, low=r.low)
               for i, r in enumerate(history.itertuples())]
    window, out = _run([], *records[:-1])
    assert len(window) == features.LOOKBACK
    assert [b["date"] for b in window] == list(history["date"].iloc[-features.LOOKBACK - 1:-1])
    assert [o["valid"] for o in out if o["kind"] == "bar"] == [False] * (features.LOOKBACK - 1) + [True] * 10
    window, out = _run(window, records[-1])  # scored from the trimmed window only
    assert len(window) == features.LOOKBACK and window[-1]["date"] == history["date"].iloc[-1]
    offline = features.compute(history.assign(volume=1000.0)).iloc[-1]
    streamed = json.loads(out[0]["features"])
    assert list(streamed) == features.FEATURE_NAMES
    np.testing.assert_array_equal(np.array(list(streamed.values())), offline[features.FEATURE_NAMES].to_numpy(float))
