"""What acting on the out-of-sample probabilities would have earned, after costs, filled at the next open.

Timing. A probability made at session t's close is acted on at the instrument's next
bar's OPEN (session t+1 for every row `dataset.build` labels, since a target needs
that bar), and that position is held to the following bar's open (open-to-open). The
last interval of an instrument, where no later bar is given, ends at its fill bar's
close: that is where every position still open at the end is closed, paying its exit.
So each signal earns exactly one holding interval, starting after its session.

Costs. Every fill pays ``cost_bps`` (brokerage, fees) plus a half-spread by liquidity
(`SPREAD_BUCKETS`) on the traded weight: entries, exits, resizes and the final close.
The liquidity is the instrument's mean daily traded value over its trailing
`LIQUIDITY_WINDOW` bars up to the signal's session (no look-ahead; no-trade filler
bars count as zero). Weights are reset to their targets at each open; the drift of
weights between opens is not charged.

Strategies, all on stocks only (indices are not tradable), each an equal-weight book:
``long_flat`` (each instrument with a signal long when P(up) >= 0.5, flat otherwise,
weight 1/N of the instruments with a signal that session); ``decile_long_short`` (long
the top decile by probability, short the bottom one, each leg 1 unit of capital: a
measure of ranking skill, not a tradable book since DSE allows no short selling);
``basket_buy_and_hold`` (every instrument with a signal, 1/N, same fills and costs);
``index_buy_and_hold`` (the index row, e.g. DSEX, when the bars have it; charged
``cost_bps`` and the tightest half-spread, as an index tracker would be).

Only walk-forward (out-of-sample) probabilities belong here, and the backtest is a
report: it is never part of the champion/challenger gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse_platform.data.instruments import is_index
from dse_platform.model.features import drop_synthetic

SESSIONS_PER_YEAR = 240
#: bars (sessions the instrument has a bar) over which liquidity is averaged, ending at the signal's session
LIQUIDITY_WINDOW = 20
#: (mean daily traded value in taka at least, half-spread in bps), most liquid first. The edges split the
#: instruments of DSE's day-end archive of 2025-10-22 (data/day-end-archive-2025-10-22.csv, VALUE (mn))
#: at about their 88th, 59th and 42nd percentiles. The spreads are assumptions (the data holds no quotes),
#: widening as trading thins; the last is for instruments that barely trade.
SPREAD_BUCKETS: tuple[tuple[float, float], ...] = ((10e6, 15.0), (1e6, 30.0), (0.1e6, 60.0), (0.0, 120.0))
FIGURES = ("total_return", "sharpe", "max_drawdown", "turnover", "cost")


@dataclass(frozen=True)
class Backtest:
    """Per strategy (columns), indexed by signal session: the net return of acting on that session's
    signals (``returns``) and the growth of 1 (``curves``); ``summary`` holds ``<strategy>_<figure>``
    for `FIGURES`; ``fills`` one row per traded signal (entry, exit, return, half-spread)."""

    returns: pd.DataFrame
    curves: pd.DataFrame
    summary: dict[str, float]
    fills: pd.DataFrame
    cost_bps: float


def half_spread_bps(traded_value: np.ndarray) -> np.ndarray:
    """The `SPREAD_BUCKETS` half-spread of each mean daily traded value (NaN: the least liquid bucket)."""
    edges = np.array([edge for edge, _ in SPREAD_BUCKETS])
    spreads = np.array([bps for _, bps in SPREAD_BUCKETS])
    value = np.nan_to_num(np.asarray(traded_value, dtype=float), nan=0.0)
    return spreads[np.argmax(value[:, None] >= edges[None, :], axis=1)]


def _liquidity(bars: pd.DataFrame) -> pd.DataFrame:
    """symbol, date, trailing mean daily traded value (taka) over the bars up to and including ``date``."""
    frame = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    value = frame["close"] * frame["volume"]
    if "value_mn" in frame:
        value = (frame["value_mn"] * 1e6).fillna(value)
    traded = value.groupby(frame["symbol"], sort=False).rolling(LIQUIDITY_WINDOW, min_periods=1).mean()
    return pd.DataFrame({"symbol": frame["symbol"].to_numpy(), "date": frame["date"].to_numpy(),
                         "traded_value": traded.droplevel(0).sort_index().to_numpy()})


def fills(predictions: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    """Each signal's holding interval: entry at the instrument's first tradable bar after the signal's
    session (its open), exit at the open of the bar after that or, with none given, at the entry bar's close.

    Adds ``entry_date``, ``exit_date``, ``ret`` (exit / entry price - 1), ``half_spread_bps`` (from
    liquidity up to the signal's session), and ``after_prev``/``before_next``: whether the previous
    signal's interval ends where this one starts (and the next starts where this one ends), so a held
    position is not charged twice. Signals with no tradable bar after them are dropped, and so is a
    signal superseded by a later one before the instrument trades again (only the latest is acted on).
    """
    tradable = drop_synthetic(bars)
    tradable = tradable.loc[(tradable["open"] > 0) & (tradable["close"] > 0), ["symbol", "date", "open", "close"]]
    tradable = tradable.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    tradable["bar"] = np.arange(len(tradable))
    following = tradable.groupby("symbol", sort=False)[["date", "open"]].shift(-1)
    tradable["exit_date"] = following["date"].fillna(tradable["date"])
    tradable["exit_price"] = following["open"].fillna(tradable["close"])

    signals = predictions[["symbol", "date", "probability"]].merge(_liquidity(bars), on=["symbol", "date"],
                                                                   how="left")
    signals["half_spread_bps"] = half_spread_bps(signals["traded_value"].to_numpy())
    signals["key"] = pd.to_datetime(signals["date"])
    tradable["key"] = pd.to_datetime(tradable["date"])
    entries = tradable.drop(columns="date").rename(columns={"open": "entry_price"}).sort_values("key", kind="stable")
    out = pd.merge_asof(signals.sort_values("key", kind="stable"), entries, on="key", by="symbol",
                        direction="forward", allow_exact_matches=False)
    out = out.dropna(subset=["bar"]).drop(columns="key").sort_values(["symbol", "date"], kind="stable")
    out = out.drop_duplicates(["symbol", "bar"], keep="last").reset_index(drop=True)
    out["entry_date"] = tradable["date"].to_numpy()[out["bar"].to_numpy(int)]
    out["ret"] = out["exit_price"] / out["entry_price"] - 1
    by_symbol = out.groupby("symbol", sort=False)["bar"]
    out["after_prev"] = (by_symbol.shift(1) + 1 == out["bar"]).to_numpy()
    out["before_next"] = (by_symbol.shift(-1) == out["bar"] + 1).to_numpy()
    return out.drop(columns=["bar", "close"])


def _book(frame: pd.DataFrame, weight: pd.Series, cost_bps: float) -> pd.DataFrame:
    """Per signal session: net return, traded weight and cost of holding ``weight`` (aligned with ``frame``)."""
    w = weight.to_numpy(float)
    prev = np.where(frame["after_prev"], np.roll(w, 1), 0.0)
    traded = np.abs(w - prev) + np.where(frame["before_next"], 0.0, np.abs(w))
    cost = traded * (cost_bps + frame["half_spread_bps"].to_numpy()) / 1e4
    rows = pd.DataFrame({"ret": w * frame["ret"].to_numpy() - cost, "turnover": traded, "cost": cost},
                        index=frame["date"].to_numpy())
    return rows.groupby(level=0).sum()


def _deciles(frame: pd.DataFrame) -> pd.Series:
    """+1/n for the top n by probability of each session, -1/n for the bottom n (n = a tenth, at least 1)."""
    count = frame.groupby("date")["symbol"].transform("size")
    n = np.maximum(count // 10, 1)
    ranked = frame.sort_values(["probability", "symbol"], kind="stable")
    rank = ranked.groupby("date").cumcount().reindex(frame.index)
    top, bottom = rank >= count - n, rank < n
    return (top.astype(float) - bottom.astype(float)).where(count >= 2, 0.0) / n


def drawdown(growth: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Fall from the running peak of each curve, the starting capital of 1 counting as the first peak."""
    return growth / growth.cummax().clip(lower=1.0) - 1


def _summary(book: pd.DataFrame) -> dict[str, float]:
    """The `FIGURES` of one book's per-session ``ret``, ``turnover`` and ``cost``."""
    returns, growth = book["ret"], (1 + book["ret"]).cumprod()
    std = returns.std()
    return {
        "total_return": float(growth.iloc[-1] - 1),
        "sharpe": float(returns.mean() / std * np.sqrt(SESSIONS_PER_YEAR)) if std > 0 else 0.0,
        "max_drawdown": float(drawdown(growth).min()),
        "turnover": float(book["turnover"].mean()),
        "cost": float(book["cost"].sum()),
    }


def run(predictions: pd.DataFrame, bars: pd.DataFrame, cost_bps: float, index_symbol: str) -> Backtest:
    """The strategies of the module docstring on ``predictions`` (symbol, date, probability).

    ``bars`` (symbol, date, open, close, volume, optionally value_mn and quality_flags, as the store
    holds them) must cover every predicted instrument from the first prediction through the session
    after the last one, plus ``index_symbol`` for its buy-and-hold. Bars from up to `LIQUIDITY_WINDOW`
    sessions before the first prediction make the first signals' liquidity a full window. ``turnover``
    is the mean traded weight per session (buys plus sells, fraction of the book), ``cost`` the sum
    of the sessions' costs (fraction of the book).
    """
    if predictions["date"].max() >= bars["date"].max():
        raise ValueError("the bars end on or before the last prediction's session: pass the session after it too")
    stocks = predictions.loc[~predictions["symbol"].map(is_index)]
    frame = fills(stocks, bars)
    per_session = frame.groupby("date")["symbol"].transform("size")
    weights = {"long_flat": (frame["probability"] >= 0.5) / per_session,
               "decile_long_short": _deciles(frame),
               "basket_buy_and_hold": 1.0 / per_session}
    books = {name: _book(frame, w, cost_bps) for name, w in weights.items()}
    sessions = pd.Index(sorted(stocks["date"].unique()), name="date")
    index_signals = pd.DataFrame({"symbol": index_symbol, "date": sessions, "probability": 1.0})
    index_frame = fills(index_signals, bars[bars["symbol"] == index_symbol])
    if not index_frame.empty:
        index_frame["half_spread_bps"] = min(bps for _, bps in SPREAD_BUCKETS)
        books["index_buy_and_hold"] = _book(index_frame, pd.Series(1.0, index=index_frame.index), cost_bps)
    # a session with nothing to act on (a superseded or missing signal) earns 0; none after a book's last fill
    books = {name: book.reindex(sessions[sessions <= book.index.max()], fill_value=0.0)
             for name, book in books.items()}
    summary = {f"{name}_{figure}": value for name, book in books.items() for figure, value in _summary(book).items()}
    returns = pd.DataFrame({name: book["ret"] for name, book in books.items()}, index=sessions)
    curves = (1 + returns).cumprod().where(returns.notna())
    return Backtest(returns, curves, summary, frame, cost_bps)
