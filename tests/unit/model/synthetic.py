"""Constructed bars for unit tests: random walks on DSE sessions (Sunday to Thursday)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from dse_platform.data.trading_calendar import weekday_calendar

FIRST_SESSION = dt.date(2024, 1, 7)  # a Sunday


def sessions(n: int, start: dt.date = FIRST_SESSION) -> list[dt.date]:
    """The first ``n`` sessions of the weekday calendar from ``start`` on."""
    calendar = weekday_calendar()
    days = [start if calendar.is_session(start) else calendar.next_session(start)]
    while len(days) < n:
        days.append(calendar.next_session(days[-1]))
    return days


def random_bars(symbol: str, n: int, seed: int, volatility: float = 0.02, tick: float = 0.1) -> pd.DataFrame:
    """``n`` daily bars of one instrument with INPUT_COLUMNS, closes rounded to ``tick`` (so some are unchanged)."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, volatility, n))) / tick) * tick
    opn = np.round(close * np.exp(rng.normal(0, volatility / 2, n)) / tick) * tick
    high = np.maximum(opn, close) + tick * rng.integers(0, 5, n)
    low = np.minimum(opn, close) - tick * rng.integers(0, 5, n)
    return pd.DataFrame({"symbol": symbol, "date": sessions(n), "open": opn, "high": high, "low": low,
                         "close": close, "volume": rng.integers(1_000, 100_000, n).astype(float)})
