"""Live accuracy of each role and model version on resolved outcomes, beside the baselines.

Both roles feed it: ``production`` (what was served) and ``challenger`` (scored in shadow on
the same bars), so a challenger's live record sits beside the champion's before anyone promotes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd
from sqlalchemy import select

from dse_platform.contracts import tables
from dse_platform.serving import database

#: accuracy baselines; "majority" calls the window's more frequent outcome for every row (on DSE: not up),
#: the strongest constant call, so a constant model can never pass as better than a baseline
BASELINES = ("baseline_always_up", "baseline_majority", "baseline_yesterday_sign")


def strongest_baseline(row: Mapping[str, float]) -> str:
    """The baseline a live-accuracy row must beat: the best of them on the same outcomes."""
    return max(BASELINES, key=lambda b: row[b])


def live_accuracy(engine, since: dt.date, until: dt.date) -> pd.DataFrame:
    """Accuracy per role and model version on outcomes of bars dated ``since``..``until``, beside the baselines.

    Production's rows first, then the challenger's; within a role by version.
    """
    table = tables.prediction_outcomes
    outcomes = database.read_frame(engine, select(table).where(table.c.date >= since, table.c.date <= until))
    if outcomes.empty:
        return pd.DataFrame()
    bars = database.read_frame(engine, select(tables.bars.c.symbol, tables.bars.c.date, tables.bars.c.close)
                               .where(tables.bars.c.date <= until)).sort_values(["symbol", "date"])
    bars["up_today"] = bars.groupby("symbol")["close"].diff() > 0
    merged = outcomes.merge(bars[["symbol", "date", "up_today"]], on=["symbol", "date"], how="left")
    merged["up_today"] = merged["up_today"].astype("boolean").fillna(False).astype(int)
    rows = []
    merged["order"] = merged["role"].map({role: i for i, role in enumerate(tables.ROLES)})
    for (_, role, version), part in merged.groupby(["order", "role", "model_version"]):
        up_rate = float((part["actual"] == 1).mean())
        rows.append({"role": role, "model_version": version, "outcomes": len(part),
                     "accuracy": float(part["correct"].mean()),
                     "baseline_always_up": up_rate, "baseline_majority": max(up_rate, 1 - up_rate),
                     "baseline_yesterday_sign": float((part["actual"] == part["up_today"]).mean())})
    return pd.DataFrame(rows)
