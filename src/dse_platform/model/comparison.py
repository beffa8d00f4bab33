"""A paired, date-clustered comparison of two models' probabilities on the same out-of-sample rows.

Rows of one session share the market's move, so they are not independent draws: a
window's metric is the mean over its dates of the metric computed within each date
(never pooled across dates or folds), and its uncertainty comes from resampling whole
dates (a cluster bootstrap). The two models are scored on the same dates and the same
resampled dates (paired), so the market's day-to-day swings cancel out of the difference.

Metrics, all higher-is-better per date: ``roc_auc`` and ``balanced_accuracy`` (only on
dates where both outcomes occur), ``accuracy``, ``neg_log_loss`` and ``neg_brier``.
The gate's rule is `decide` on a declarative `GatePolicy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn import metrics as skm

Metric = Literal["roc_auc", "balanced_accuracy", "accuracy", "neg_log_loss", "neg_brier"]
#: probabilities are clipped like `evaluation.score` does, so a 0 or 1 costs a finite log loss
_EPS = 1e-6


def metric_value(metric: Metric, y: np.ndarray, p: np.ndarray, calls: np.ndarray | None = None) -> float:
    """``metric`` of probabilities ``p`` (and ``calls``, default p >= 0.5) for outcomes ``y``; NaN when undefined."""
    p = np.clip(p, _EPS, 1 - _EPS)
    calls = (p >= 0.5).astype(int) if calls is None else calls
    both = len(np.unique(y)) == 2
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y, p)) if both else float("nan")
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, calls)) if both else float("nan")
    if metric == "accuracy":
        return float(skm.accuracy_score(y, calls))
    if metric == "neg_log_loss":
        return -float(skm.log_loss(y, p, labels=[0, 1]))
    return -float(skm.brier_score_loss(y, p))


def per_date(rows: pd.DataFrame, probability: str, metric: Metric, calls: str | None = None) -> pd.Series:
    """``metric`` of column ``probability`` (and ``calls``) within each ``date`` of ``rows`` (with ``target``).

    NaN on dates where it is undefined (one outcome only, for the rank and balanced metrics).
    """
    values = {day: metric_value(metric, group["target"].to_numpy(int), group[probability].to_numpy(float),
                                None if calls is None else group[calls].to_numpy(int))
              for day, group in rows.dropna(subset=[probability]).groupby("date", sort=True)}
    return pd.Series(values, dtype=float, name=probability).rename_axis("date")


@dataclass(frozen=True)
class Paired:
    """Challenger minus another model on the mean per-date metric, with its bootstrap interval."""

    challenger: float  # mean per-date metric of the challenger on the common dates
    other: float  # the same for the other model
    difference: float
    lower: float
    upper: float
    prob_better: float  # share of bootstrap resamples where the challenger's mean is higher
    n_dates: int


def paired_bootstrap(challenger: pd.Series, other: pd.Series, confidence: float, n_boot: int,
                     seed: int) -> Paired:
    """The difference of mean per-date metrics over the dates both define, resampling whole dates.

    ``challenger`` and ``other`` are `per_date` series. The bounds are the two-sided ``confidence``
    percentile interval of ``n_boot`` resamples drawn with ``seed`` (so the same inputs give the same
    answer); NaN when no date is common.
    """
    both = pd.concat([challenger, other], axis=1, join="inner").dropna()
    ours, theirs = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
    n = len(both)
    if n == 0:
        return Paired(*[float("nan")] * 6, n_dates=0)
    diff = ours - theirs
    means = diff[np.random.default_rng(seed).integers(0, n, size=(n_boot, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(means, [tail, 1 - tail])
    return Paired(float(ours.mean()), float(theirs.mean()), float(diff.mean()), float(lower), float(upper),
                  float(np.mean(means > 0)), n)


class GatePolicy(BaseModel):
    """What the challenger must show to replace the champion, declared in one place.

    ``margin``: how far above the champion the lower bound of the difference must be (in the
    metric's units); beating a baseline needs a lower bound above 0. ``confidence``: of the
    two-sided interval, so promotion is a one-sided test at (1 - confidence) / 2.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Metric = "roc_auc"
    margin: float = Field(0.0, ge=0)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    must_beat_baselines: bool = True
    n_boot: int = Field(2000, ge=100)
    seed: int = 0
    min_dates: int = Field(20, ge=2)


@dataclass(frozen=True)
class Comparisons:
    """The challenger against the champion (None: no champion) and against each baseline, by name."""

    metric: Metric
    n_dates: int  # dates on which the challenger's metric is defined
    champion: Paired | None
    baselines: dict[str, Paired]


def compare(policy: GatePolicy, rows: pd.DataFrame, baselines: Sequence[str]) -> Comparisons:
    """Every paired comparison the gate needs, on ``rows`` with date, target, p_challenger, p_champion
    (absent or all NaN: no champion) and p_<baseline> (optionally call_<baseline>, a baseline's own call)."""
    def scored(name: str) -> pd.Series:
        calls = f"call_{name}" if f"call_{name}" in rows else None
        return per_date(rows, f"p_{name}", policy.metric, calls)

    def against(name: str) -> Paired:
        return paired_bootstrap(ours, scored(name), policy.confidence, policy.n_boot, policy.seed)

    ours = scored("challenger")
    has_champion = "p_champion" in rows and rows["p_champion"].notna().any()
    return Comparisons(policy.metric, int(ours.notna().sum()), against("champion") if has_champion else None,
                       {name: against(name) for name in baselines})


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    figures: dict[str, float]


def _describe(metric: str, other: str, c: Paired, confidence: float) -> str:
    return (f"{metric} {c.challenger:.4f} vs {other} {c.other:.4f}: difference {c.difference:+.4f}, "
            f"{confidence:.0%} interval [{c.lower:+.4f}, {c.upper:+.4f}], P(better) {c.prob_better:.2f} "
            f"over {c.n_dates} dates")


def decide(policy: GatePolicy, comparisons: Comparisons) -> Verdict:
    """Promote only when the challenger is clearly better than the strongest baseline and the champion.

    Held: fewer than ``min_dates`` dates; the lower bound against the strongest baseline (highest mean
    per-date metric) not above 0, when ``must_beat_baselines``; the lower bound against the champion
    not above ``margin`` (worse, or statistically indistinguishable). With no champion, beating the
    strongest baseline is enough.
    """
    figures: dict[str, float] = {"n_dates": float(comparisons.n_dates)}
    named = {**({"champion": comparisons.champion} if comparisons.champion else {}),
             **{f"baseline_{k}": v for k, v in comparisons.baselines.items()}}
    for name, c in named.items():
        figures |= {f"challenger_vs_{name}_{k}": getattr(c, k)
                    for k in ("difference", "lower", "upper", "prob_better")}
        figures[name] = c.other
    if named:
        figures["challenger"] = next(iter(named.values())).challenger
    metric, level = comparisons.metric, policy.confidence
    if comparisons.n_dates < policy.min_dates:
        return Verdict(False, f"only {comparisons.n_dates} dates with a defined {metric} in the window; the "
                              f"policy needs at least {policy.min_dates}", figures)
    beaten = ""
    if policy.must_beat_baselines:
        if not comparisons.baselines:
            return Verdict(False, "the policy requires beating the baselines but none were compared", figures)
        strongest, c = max(comparisons.baselines.items(), key=lambda item: item[1].other)
        told = _describe(metric, f"the strongest baseline {strongest}", c, level)
        if not c.lower > 0:
            return Verdict(False, f"does not beat the strongest baseline: {told}; the lower bound is not above 0",
                           figures)
        beaten = f"; beats the strongest baseline: {told}"
    champion = comparisons.champion
    if champion is None:
        return Verdict(True, f"no production model yet{beaten}", figures)
    told = _describe(metric, "the champion", champion, level)
    if champion.lower > policy.margin:
        return Verdict(True, f"better than the champion: {told}; the lower bound is above the margin "
                             f"{policy.margin:g}{beaten}", figures)
    verdict = "worse than" if champion.upper < 0 else "not distinguishable from"
    return Verdict(False, f"{verdict} the champion: {told}; the lower bound is not above the margin "
                          f"{policy.margin:g}", figures)
