"""Training artifacts people read: calibration and coefficient plots, the backtest as PNG and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


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


def backtest_report(curves: dict[str, pd.DataFrame], summary: dict[str, float], cost_bps: float,
                    png: Path, page: Path) -> tuple[Path, Path]:
    """Growth of 1 taka for each strategy, as a picture and as an HTML page with the figures."""
    fig, axes = plt.subplots(len(curves), 1, figsize=(8, 3.2 * len(curves)), squeeze=False)
    for ax, (name, growth) in zip(axes[:, 0], curves.items(), strict=True):
        growth.plot(ax=ax)
        ax.set(title=f"{name}: long/flat by the model vs buy-and-hold (cost {cost_bps:g} bps per switch)",
               ylabel="growth of 1")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in sorted(summary.items()))
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>DSE backtest</title></head><body>"
        "<h1>Walk-forward backtest</h1><p>Positions are taken at each bar's close from out-of-sample "
        f"probabilities (long when P(up) &ge; 0.5, flat otherwise); each switch costs {cost_bps:g} bps. "
        "'index' trades the DSEX index itself; 'basket' is an equal-weight average over all "
        f"instruments.</p><img src='{html.escape(png.name)}' alt='growth curves'>"
        f"<table border='1'><tr><th>figure</th><th>value</th></tr>{rows}</table></body></html>")
    return png, page
