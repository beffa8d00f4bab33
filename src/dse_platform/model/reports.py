"""Training artifacts people read: calibration and coefficient plots, the backtest as PNG and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dse_platform.model import backtest


def calibration_plot(y: np.ndarray, p: np.ndarray, path: Path, bins: int = 10) -> Path:
    """Observed up-rate per predicted-probability decile (out-of-sample rows)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    frame = pd.DataFrame({"p": p, "y": y, "bin": which}).groupby("bin").mean()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.plot(frame["p"], frame["y"], "o-", label="model (walk-forward)")
    lo, hi = float(min(frame["p"].min(), frame["y"].min())), float(max(frame["p"].max(), frame["y"].max()))
    pad = max(0.02, (hi - lo) * 0.1)
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), xlabel="predicted P(up)",
           ylabel="observed up-rate", title="Calibration, out-of-sample")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def coefficient_plot(names: list[str], coefficients: np.ndarray, path: Path) -> Path:
    """Standardised logistic-regression coefficients, largest magnitude first."""
    order = np.argsort(np.abs(coefficients))
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1))
    ax.barh(np.array(names)[order], coefficients[order],
            color=["tab:green" if c > 0 else "tab:red" for c in coefficients[order]])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(title="Coefficients (standardised features)", xlabel="log-odds per standard deviation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def backtest_report(result: backtest.Backtest, png: Path, page: Path) -> tuple[Path, Path]:
    """Growth of 1 taka and drawdown per strategy as a picture, and an HTML page with the rules and figures."""
    fig, (growth, drawdown) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, height_ratios=(2, 1))
    result.curves.plot(ax=growth)
    growth.set(title=f"Walk-forward backtest, next-open fills, {result.cost_bps:g} bps + half-spread per side",
               ylabel="growth of 1")
    backtest.drawdown(result.curves).plot(ax=drawdown, legend=False)
    drawdown.set(ylabel="drawdown", xlabel="signal session")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    head = "".join(f"<th>{html.escape(f)}</th>" for f in backtest.FIGURES)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{result.summary[f'{name}_{f}']:.4f}</td>" for f in backtest.FIGURES) + "</tr>"
        for name in result.curves.columns)
    spreads = ", ".join(f"&ge; {edge / 1e6:g} mn: {bps:g}" for edge, bps in backtest.SPREAD_BUCKETS)
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>DSE backtest</title></head><body>"
        "<h1>Walk-forward backtest</h1><p>A probability made at a session's close is filled at the "
        "instrument's next open and held to the open after (the last position is closed at the close of the "
        "session after the last signal). long_flat: long when P(up) &ge; 0.5, equal weight over the "
        "instruments with a signal; decile_long_short: long the top decile by probability, short the bottom "
        "one (a measure of ranking, DSE allows no short selling); basket_buy_and_hold: every instrument, equal "
        "weight, same fills and costs; index_buy_and_hold: the DSEX index when the data has it. "
        f"Each fill pays {result.cost_bps:g} bps plus a half-spread in bps by the instrument's mean daily "
        f"traded value (taka) over its last {backtest.LIQUIDITY_WINDOW} bars ({spreads}; assumed, not "
        "measured). Out-of-sample probabilities only; this report never decides a promotion.</p>"
        f"<img src='{html.escape(png.name)}' alt='growth and drawdown curves'>"
        f"<table border='1'><tr><th>strategy</th>{head}</tr>{rows}</table></body></html>")
    return png, page
