"""What the pages print: Dhaka wall time, units, markdown-inert text and raw bytes made safe."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from dse_platform.dashboard import display
from tests.unit.dashboard.world import HOSTILE_RAW, INJECTION


def test_times_are_dhaka_wall_time() -> None:
    utc = pd.Series([dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, 18, 30, tzinfo=dt.UTC)])
    assert list(display.dhaka(utc).astype(str)) == ["2026-01-01 06:00:00", "2026-01-02 00:30:00"]
    assert display.dhaka_ms(pd.Series([0])).iloc[0] == pd.Timestamp("1970-01-01 06:00:00")
    assert display.dhaka_text(dt.datetime(2026, 1, 1, 0, 0)) == "2026-01-01 06:00:00"  # naive = UTC, as stored
    assert display.dhaka_text(None) == "-"


def test_units() -> None:
    assert display.taka(1234.5) == "Tk 1,234.50"
    assert display.taka_mn(1234.56) == "Tk 1,234.6 mn"
    assert display.taka(float("nan")) == display.taka_mn(None) == "-"


def test_raw_bytes_become_inert_text() -> None:
    shown = display.safe_bytes(HOSTILE_RAW, limit=1_000)
    assert shown.isprintable()
    assert "\\x00" in shown and "\\xff" in shown and "\\n" in shown and "\\u202e" in shown
    assert shown.startswith('{"symbol": "<script>')  # angle brackets stay text: tables never render markup
    cut = display.safe_bytes(b"a" * 500, limit=10)
    assert cut == "aaaaaaaaaa… (+490 chars)"
    assert display.safe_bytes(None) == "(none)"


def test_markdown_literal_escapes_everything_markdown_would_act_on() -> None:
    assert display.literal("[x](javascript:alert(1))") == "\\[x\\]\\(javascript\\:alert\\(1\\)\\)"
    assert display.literal(INJECTION) == "x'; DROP TABLE predictions; \\-\\-"
    assert display.literal("<b>*_`#") == "\\<b\\>\\*\\_\\`\\#"


def test_what_the_user_typed_is_shown_as_typed() -> None:
    assert display.code_span(INJECTION) == f"` {INJECTION} `"
    assert display.code_span("a`b``c") == "``` a`b``c ```"
