"""Live accuracy of each model version on resolved outcomes, beside the baselines."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from dse_platform.serving import database


def live_accuracy(engine, since: dt.date) -> pd.DataFrame:
    """Accuracy per model version on resolved outcomes since ``since``, beside always-up and yesterday's sign."""
    outcomes = database.read_frame(engine, "prediction_outcomes")
    if outcomes.empty:
        return pd.DataFrame()
    outcomes = outcomes[outcomes["date"] >= since]
    bars = database.read_frame(engine, "bars")[["symbol", "date", "close"]].sort_values(["symbol", "date"])
    bars["up_today"] = bars.groupby("symbol")["close"].diff() > 0
    merged = outcomes.merge(bars[["symbol", "date", "up_today"]], on=["symbol", "date"], how="left")
    rows = []
    for version, part in merged.groupby("model_version"):
        rows.append({"model_version": version, "outcomes": len(part), "accuracy": float(part["correct"].mean()),
                     "baseline_always_up": float((part["actual"] == 1).mean()),
                     "baseline_yesterday_sign": float((part["actual"] == part["up_today"].astype(int)).mean())})
    return pd.DataFrame(rows)
