"""A long/flat backtest of out-of-sample probabilities against buy-and-hold, after costs.

It answers whether the model's calls would have been worth acting on: a position
taken at a bar's close (long when P(up) >= 0.5, else flat) earns the instrument's
return to the next session's close, and every change of position pays a cost.
Only out-of-sample (walk-forward) probabilities belong here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse_platform.data.instruments import INDEX_SYMBOLS

SESSIONS_PER_YEAR = 240


@dataclass(frozen=True)
class Backtest:
    """Growth of 1 per curve (``index``, ``basket``), columns buy_and_hold and model_long_flat; summary figures."""

    curves: dict[str, pd.DataFrame]
    summary: dict[str, float]


def daily_returns(oos: pd.DataFrame, cost_bps: float) -> pd.DataFrame:
    """Per row: the next-session return ``ret``, the position ``pos`` and the strategy's return after costs.

    ``oos`` holds symbol, date, probability, close and next_close. The first row of an
    instrument pays for entering when it is long.
    """
    frame = oos.sort_values(["symbol", "date"], kind="stable").copy()
    frame["ret"] = frame["next_close"] / frame["close"] - 1
    frame["pos"] = (frame["probability"] >= 0.5).astype(float)
    changed = frame.groupby("symbol")["pos"].diff().abs().fillna(frame["pos"])
    frame["strategy"] = frame["pos"] * frame["ret"] - changed * cost_bps / 1e4
    return frame


def _summary(name: str, returns: pd.DataFrame, growth: pd.DataFrame) -> dict[str, float]:
    out = {}
    for col in growth:
        r = returns[col]
        out[f"{name}_{col}_total_return"] = float(growth[col].iloc[-1] - 1)
        out[f"{name}_{col}_sharpe"] = float(r.mean() / r.std() * np.sqrt(SESSIONS_PER_YEAR)) if r.std() > 0 else 0.0
        out[f"{name}_{col}_max_drawdown"] = float((growth[col] / growth[col].cummax() - 1).min())
    return out


def long_flat(oos: pd.DataFrame, index_symbol: str, cost_bps: float) -> Backtest:
    """The model's long/flat calls vs buy-and-hold, on ``index_symbol`` and on an equal-weight basket of stocks."""
    frame = daily_returns(oos, cost_bps)
    returns: dict[str, pd.DataFrame] = {}
    index_rows = frame[frame["symbol"] == index_symbol].set_index("date")
    if not index_rows.empty:
        returns["index"] = pd.DataFrame({"buy_and_hold": index_rows["ret"], "model_long_flat": index_rows["strategy"]})
    stocks = frame[~frame["symbol"].isin(INDEX_SYMBOLS)]
    returns["basket"] = (stocks.groupby("date")[["ret", "strategy"]].mean()
                         .rename(columns={"ret": "buy_and_hold", "strategy": "model_long_flat"}))
    curves = {name: (1 + r).cumprod() for name, r in returns.items()}
    summary: dict[str, float] = {}
    for name, r in returns.items():
        summary |= _summary(name, r, curves[name])
    return Backtest(curves, summary)
