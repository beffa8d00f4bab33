"""The paired date-bootstrap and the gate's policy on constructed out-of-sample rows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from dse_platform.model import comparison
from tests.unit.model.synthetic import sessions

POLICY = comparison.GatePolicy(metric="roc_auc", n_boot=500, seed=7, min_dates=10)


def _rows(n_dates: int = 20, per_date: int = 40, seed: int = 0) -> pd.DataFrame:
    """Outcomes driven by a latent score: ``p_good`` sees it well, ``p_weak`` barely, ``p_flat`` not at all."""
    rng = np.random.default_rng(seed)
    days = np.repeat(sessions(n_dates), per_date)
    z = rng.normal(size=len(days))
    target = (z + rng.normal(size=len(days)) > 0).astype(int)
    return pd.DataFrame({"date": days, "target": target, "p_good": expit(1.5 * z),
                         "p_weak": expit(0.2 * z + rng.normal(size=len(days))), "p_flat": 0.5,
                         "noise": rng.normal(scale=1e-4, size=len(days))})


def _gate_rows(rows: pd.DataFrame, challenger: str, champion: str | None, **baselines: str) -> pd.DataFrame:
    out = pd.DataFrame({"date": rows["date"], "target": rows["target"], "p_challenger": rows[challenger]})
    if champion is not None:
        out["p_champion"] = rows[champion]
    for name, column in baselines.items():
        out[f"p_{name}"] = rows[column]
    return out


def _compare(frame: pd.DataFrame) -> comparison.Comparisons:
    names = [c.removeprefix("p_") for c in frame if c.startswith("p_") and c not in ("p_challenger", "p_champion")]
    return comparison.compare(POLICY, frame, names)


def _decide(frame: pd.DataFrame) -> comparison.Verdict:
    return comparison.decide(POLICY, _compare(frame))


def test_per_date_metric_is_computed_within_each_date_and_undefined_on_one_outcome() -> None:
    rows = _rows(n_dates=3)
    rows.loc[rows["date"] == rows["date"].iloc[0], "target"] = 1
    auc = comparison.per_date(rows, "p_good", "roc_auc")
    assert np.isnan(auc.iloc[0])
    second = rows[rows["date"] == auc.index[1]]
    assert auc.iloc[1] == pytest.approx(roc_auc_score(second["target"], second["p_good"]))
    assert (comparison.per_date(rows, "p_good", "neg_log_loss") < 0).all()


def test_a_worse_challenger_is_held() -> None:
    rows = _rows()
    verdict = _decide(_gate_rows(rows, "p_weak", "p_good", always_up="p_flat"))
    assert not verdict.promote
    assert verdict.reason.startswith("worse than the champion: roc_auc")
    assert verdict.figures["challenger_vs_champion_upper"] < 0


def test_an_indistinguishable_challenger_is_held() -> None:
    rows = _rows()
    rows["p_same"] = rows["p_good"] + rows["noise"]
    verdict = _decide(_gate_rows(rows, "p_same", "p_good", always_up="p_flat"))
    assert not verdict.promote
    assert verdict.reason.startswith("not distinguishable from the champion")
    assert "the lower bound is not above the margin 0" in verdict.reason
    lower, upper = verdict.figures["challenger_vs_champion_lower"], verdict.figures["challenger_vs_champion_upper"]
    assert lower <= 0 <= upper


def test_a_clearly_better_challenger_is_promoted() -> None:
    compared = _compare(_gate_rows(_rows(), "p_good", "p_weak", always_up="p_flat"))
    verdict = comparison.decide(POLICY, compared)
    assert verdict.promote
    assert verdict.reason.startswith("better than the champion")
    assert "beats the strongest baseline: roc_auc" in verdict.reason
    assert verdict.figures["challenger_vs_champion_prob_better"] == 1.0
    # a margin larger than the gain holds it
    assert not comparison.decide(POLICY.model_copy(update={"margin": 0.5}), compared).promote


def test_the_strongest_baseline_is_the_one_that_counts() -> None:
    rows = _rows()
    rows["p_same"] = rows["p_good"] + rows["noise"]
    compared = _compare(_gate_rows(rows, "p_same", None, always_up="p_flat", yesterday_sign="p_good"))
    both = comparison.decide(POLICY, compared)
    assert not both.promote
    assert "the strongest baseline yesterday_sign" in both.reason
    assert both.figures["baseline_always_up"] == pytest.approx(0.5)
    only_weak = comparison.decide(POLICY, replace(compared, baselines={"always_up": compared.baselines["always_up"]}))
    assert only_weak.promote and only_weak.reason.startswith("no production model yet; beats")
    # without the baseline requirement, a first model is promoted on its own
    assert comparison.decide(POLICY.model_copy(update={"must_beat_baselines": False}), compared).promote


def test_the_bootstrap_is_deterministic_with_its_seed() -> None:
    rows = _rows()
    ours, theirs = (comparison.per_date(rows, c, "neg_log_loss") for c in ("p_good", "p_weak"))
    first, again = (comparison.paired_bootstrap(ours, theirs, 0.9, 300, seed=1) for _ in range(2))
    assert first == again
    other = comparison.paired_bootstrap(ours, theirs, 0.9, 300, seed=2)
    assert other.difference == first.difference and other.lower != first.lower
    assert first.lower < first.difference < first.upper
    assert first.difference == pytest.approx((ours - theirs).mean())


def test_too_few_dates_are_held() -> None:
    rows = _rows(n_dates=5)
    verdict = _decide(_gate_rows(rows, "p_good", "p_weak", always_up="p_flat"))
    assert not verdict.promote
    assert verdict.reason == "only 5 dates with a defined roc_auc in the window; the policy needs at least 10"
    assert verdict.figures["n_dates"] == 5
