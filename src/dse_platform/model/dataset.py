"""The training set: features of every bar plus its target, built from the canonical store.

Target: 1 when the instrument's close on the next DSE session (by the learned
calendar) is above this bar's close, else 0. A row whose next-session bar is
missing (the instrument did not trade, a halt) or synthetic gets no target: it
is left out, not guessed. The streaming job resolves outcomes with the same
rule (`outcome`).

Beside the target each row carries what evaluation needs and the model never
sees: ``moved`` (the next close differs from this one: a "not up" row is mostly an
unchanged close of an illiquid name or a floor-priced one, not a fall),
``next_ret`` (the simple return to the next close, for rank IC and the backtest)
and ``traded_value`` (close x volume of the bar, for liquidity buckets).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from dse_platform.model import features


@dataclass(frozen=True)
class Dataset:
    """Rows ordered by (date, symbol): FEATURE_NAMES, ``target``, ``moved``, ``next_ret``, closes, traded value."""

    frame: pd.DataFrame
    feature_version: str

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[features.FEATURE_NAMES]

    @property
    def y(self) -> np.ndarray:
        return self.frame["target"].to_numpy(int)

    @property
    def dates(self) -> np.ndarray:
        return self.frame["date"].to_numpy()

    def digest(self) -> str:
        """SHA-256 of the exact rows and values trained on, logged with the model."""
        h = hashlib.sha256()
        cols = ["symbol", "date", *features.FEATURE_NAMES, "target"]
        h.update(pd.util.hash_pandas_object(self.frame[cols], index=False).to_numpy().tobytes())
        return h.hexdigest()


def outcome(day: dt.date, close: float, next_day: dt.date, next_close: float,
            calendar: TradingCalendar) -> int | None:
    """The realised target of a bar given the instrument's next bar; None when that is not the next session."""
    if next_day != calendar.next_session(day):
        return None
    return int(next_close > close)


def targets(bars: pd.DataFrame, calendar: TradingCalendar) -> pd.Series:
    """Vectorised `outcome` for bars sorted by (symbol, date): float 1/0, NaN where excluded."""
    by_symbol = bars.groupby("symbol", sort=False)
    next_date = by_symbol["date"].shift(-1)
    next_close = by_symbol["close"].shift(-1)
    sessions = {d: calendar.next_session(d) for d in pd.unique(bars["date"])}
    expected = bars["date"].map(sessions)
    ok = next_date.notna() & (next_date == expected)
    return pd.Series(np.where(ok, (next_close > bars["close"]).astype(float), np.nan), index=bars.index)


def build(store_dir: Path, start: dt.date | None = None, end: dt.date | None = None,
          symbols: list[str] | None = None) -> Dataset:
    """Features and targets for every labelled bar with a full lookback, from the store."""
    bars = store.read_bars(store_dir, end=end, symbols=symbols)
    calendar = store.read_calendar(store_dir)
    bars = features.drop_synthetic(bars).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    feats = features.compute(bars)
    frame = pd.concat([bars[["symbol", "date", "close"]], feats], axis=1)
    frame["target"] = targets(bars, calendar)
    frame["next_close"] = bars.groupby("symbol", sort=False)["close"].shift(-1)
    frame["traded_value"] = bars["close"] * bars["volume"]
    keep = frame["valid"] & frame["target"].notna()
    if start is not None:
        keep &= frame["date"] >= start
    frame = frame.loc[keep].drop(columns="valid")
    frame["target"] = frame["target"].astype(int)
    frame["moved"] = (frame["next_close"] != frame["close"]).astype(int)
    frame["next_ret"] = frame["next_close"] / frame["close"] - 1
    frame = frame.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
    if frame.empty:
        raise PlatformError(f"no labelled rows in {store_dir} for {start}..{end} and symbols {symbols}",
                            "widen the date range or run `dse ingest` on more data")
    return Dataset(frame, features.FEATURE_VERSION)
