"""Live performance of each role and model version on resolved outcomes, judged the way the gate judged it.

The gate promotes a model because its mean per-date ROC AUC beat the strongest baseline (`model/gate.py`).
Monitoring checks that claim on live outcomes, for ``production`` (what was served) and the ``challenger``
(scored in shadow on the same bars): the mean over dates of each date's cross-sectional AUC of P(up), beside
baselines known before each outcome, from the bars up to its date: yesterday's sign (did the instrument close
up today) and the instrument's up-rate over its last `TRAILING_SESSIONS` bars. Chance (0.5) is what any
constant call scores. Yesterday's sign is scored as the gate scores it: by the up-rates after an up day
and after any other day, learned on moves complete before the window. The gate's fifth baseline, the
illiquidity rule, needs features the serving database does not keep per outcome and is left out. The
difference to the strongest of them gets the gate's date bootstrap interval.

Accuracy at P(up) >= 0.5 is reported too, beside always-up, yesterday's sign and the window's realised
majority. The last is hindsight: no rule knows a window's majority before it ends, and in a month with more
up-moves than usual (38% against the usual 28%) an honest model's calls fall just below it (measured: 0.602
against 0.624 over 8,240 outcomes to 2025-08-14, while its per-date AUC was 0.626 against the instrument
rate's 0.602), so accuracy informs and never alerts.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
from sqlalchemy import func, select

from dse_platform.contracts import tables
from dse_platform.model import comparison
from dse_platform.serving import database

#: baselines of the per-date AUC that are known before the outcome
EX_ANTE = ("yesterday_sign", "instrument_rate")
#: bars an instrument's trailing up-rate spans (about a year of sessions); with fewer than `MIN_TRAILING` the
#: date's mean rate stands in
TRAILING_SESSIONS = 250
MIN_TRAILING = 20
#: calendar days of bars read before the window so the trailing rate has its span
_HISTORY_DAYS = 400
#: a session's cross-section this small cannot show a collapsed model
COLLAPSE_MIN_ROWS = 30

log = logging.getLogger("dse.monitoring")


def _outcomes(engine, since: dt.date, until: dt.date) -> pd.DataFrame:
    """Resolved outcomes dated ``since``..``until`` with each row's ex-ante baseline scores."""
    table = tables.prediction_outcomes
    outcomes = database.read_frame(engine, select(table).where(table.c.date >= since, table.c.date <= until))
    if outcomes.empty:
        return outcomes
    b = tables.bars
    bars = database.read_frame(engine, select(b.c.symbol, b.c.date, b.c.close).where(
        b.c.date >= since - dt.timedelta(days=_HISTORY_DAYS), b.c.date <= until)).sort_values(["symbol", "date"])
    moved = bars.groupby("symbol")["close"].diff()
    bars["up"] = moved.gt(0).astype(float).where(moved.notna())  # an instrument's first bar read: unknown
    bars["instrument_rate"] = bars.groupby("symbol")["up"].transform(
        lambda s: s.rolling(TRAILING_SESSIONS, min_periods=MIN_TRAILING).mean())
    bars["yesterday_sign"] = _sign_rates(bars, since)
    merged = outcomes.merge(bars[["symbol", "date", *EX_ANTE]], on=["symbol", "date"], how="left")
    if missing := int(merged["instrument_rate"].isna().sum() + merged["yesterday_sign"].isna().sum()):
        log.warning("%d baseline values of outcomes %s..%s have no bar (or too short a history) in the serving "
                    "database; the date's mean stands in", missing, since, until)
    for name in EX_ANTE:
        merged[name] = merged[name].fillna(merged.groupby("date")[name].transform("mean")).fillna(0.5)
    return merged.rename(columns={"actual": "target"})


def _sign_rates(bars: pd.DataFrame, since: dt.date) -> pd.Series:
    """Yesterday's sign as the gate scores it: the up-rate after an up day and after any other day, fitted on
    moves that were complete before ``since`` (so the direction, momentum or reversal, is learned, not assumed).

    With no such history the sign itself (1 after an up day, 0 otherwise) stands in.
    """
    after = bars.groupby("symbol")["up"].shift(-1)
    known = bars["up"].notna() & after.notna() & (bars.groupby("symbol")["date"].shift(-1) < since)
    rates = after[known].groupby(bars.loc[known, "up"]).mean()
    if len(rates) < 2:
        return bars["up"]
    return bars["up"].map({1.0: rates[1.0], 0.0: rates[0.0]})


def live_performance(engine, since: dt.date, until: dt.date, confidence: float, n_boot: int) -> pd.DataFrame:
    """Per role and model version, on outcomes of bars dated ``since``..``until``: per-date AUC beside the
    ex-ante baselines, the difference to the strongest with its ``confidence`` interval, and accuracy.

    Production's rows first, then the challenger's; within a role by version. Empty without outcomes.
    """
    merged = _outcomes(engine, since, until)
    if merged.empty:
        return pd.DataFrame()
    merged["order"] = merged["role"].map({role: i for i, role in enumerate(tables.ROLES)})
    rows = []
    for (_, role, version), part in merged.groupby(["order", "role", "model_version"]):
        model = comparison.per_date(part, "probability", "roc_auc")
        baselines = {name: comparison.per_date(part, name, "roc_auc") for name in EX_ANTE}
        strongest = max(EX_ANTE, key=lambda name: baselines[name].mean(skipna=True))
        paired = comparison.paired_bootstrap(model, baselines[strongest], confidence, n_boot, seed=0)
        up_rate = float(part["target"].mean())
        rows.append({"role": role, "model_version": version, "outcomes": len(part),
                     "dates": int(model.notna().sum()), "auc": paired.challenger,
                     **{f"auc_{name}": float(baselines[name].mean()) for name in EX_ANTE},
                     "strongest": strongest, "edge": paired.difference, "edge_low": paired.lower,
                     "edge_high": paired.upper, "accuracy": float(part["correct"].mean()),
                     "accuracy_always_up": up_rate,
                     "accuracy_yesterday_sign": float((part["target"] == part["yesterday_sign"]).mean()),
                     "accuracy_majority_hindsight": max(up_rate, 1 - up_rate)})
    return pd.DataFrame(rows)


def collapsed(engine, session: dt.date) -> pd.DataFrame:
    """Production versions that gave every instrument of ``session`` the same P(up): they rank nothing.

    Read from the session's predictions, so a broken model is caught on its first day, before any outcome.
    Columns: model_version, rows, probability.
    """
    p = tables.predictions
    query = (select(p.c.model_version, func.count().label("rows"), func.min(p.c.probability).label("low"),
                    func.max(p.c.probability).label("high"))
             .where(p.c.date == session, p.c.role == tables.PRODUCTION).group_by(p.c.model_version))
    spread = database.read_frame(engine, query)
    width = pd.to_numeric(spread["high"]) - pd.to_numeric(spread["low"])
    flat = spread[(pd.to_numeric(spread["rows"]) >= COLLAPSE_MIN_ROWS) & (width <= 1e-9)]
    return flat.rename(columns={"low": "probability"})[["model_version", "rows", "probability"]]
