"""How values are shown: Asia/Dhaka wall time, taka and million-taka units, raw bytes made safe to print."""

from __future__ import annotations

import datetime as dt
import math
import re

import pandas as pd

from dse_platform.data.trading_calendar import DHAKA

TZ_LABEL = "Asia/Dhaka"
#: how much of a dead letter's raw bytes a table cell shows
RAW_PREVIEW_CHARS = 160


def dhaka(values: pd.Series) -> pd.Series:
    """Aware timestamps (any zone; naive ones are UTC, as the serving DB stores them) as Asia/Dhaka wall time.

    The zone is dropped after converting: Plotly and Streamlit would otherwise show the
    browser's zone or UTC, so what is drawn is exactly the Dhaka clock.
    """
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_convert(DHAKA).dt.tz_localize(None)


def dhaka_ms(values: pd.Series) -> pd.Series:
    """Epoch milliseconds as Asia/Dhaka wall time."""
    return dhaka(pd.to_datetime(values.astype("int64"), unit="ms", utc=True))


def dhaka_text(stamp: dt.datetime | None) -> str:
    """One timestamp as 'YYYY-MM-DD HH:MM:SS' on the Dhaka clock ('-' when absent)."""
    if stamp is None or pd.isna(stamp):
        return "-"
    aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    return aware.astimezone(DHAKA).strftime("%Y-%m-%d %H:%M:%S")


def now_dhaka() -> str:
    return dhaka_text(dt.datetime.now(dt.UTC))


def taka(value: float | None, digits: int = 2) -> str:
    """A price in taka ('Tk 1,234.50')."""
    return "-" if value is None or _missing(value) else f"Tk {value:,.{digits}f}"


def taka_mn(value: float | None) -> str:
    """A turnover in million taka ('Tk 1,234.5 mn')."""
    return "-" if value is None or _missing(value) else f"Tk {value:,.1f} mn"


def _missing(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def literal(text: str) -> str:
    """Text from the database or the user, escaped so that Streamlit's Markdown shows it as typed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


def code_span(text: str) -> str:
    """Text from the user as a Markdown code span: shown exactly as typed (no escapes, no typographic dashes).

    The fence is one backtick longer than the longest run inside, as CommonMark requires.
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    return f"{fence} {text} {fence}"


def safe_bytes(raw: bytes | memoryview | None, limit: int = RAW_PREVIEW_CHARS) -> str:
    """A record's raw bytes as printable text: UTF-8 where it is, every other byte and control character escaped.

    Nothing in the result is markup or a terminal control: quotes, angle brackets and
    newlines stay inert text in a table cell. Longer text is cut to ``limit`` characters
    with the remainder's size noted.
    """
    if raw is None:
        return "(none)"
    text = bytes(raw).decode("utf-8", errors="backslashreplace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}… (+{len(shown) - limit} chars)"
