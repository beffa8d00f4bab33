"""Walk-forward refits at fold cutoffs: training rows only, the holdout untouched, every baseline beside the model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from dse_platform.model import dataset, evaluation, features, recipes, scoring, training
from tests.unit.model.synthetic import sessions

SYMBOLS = [f"S{i:02d}" for i in range(12)]


@pytest.fixture(scope="module")
def data() -> dataset.Dataset:
    """12 instruments over 160 sessions; the target leans on ret_1 and illiquid names rarely move."""
    rng = np.random.default_rng(11)
    days = sessions(160)
    n = len(days) * len(SYMBOLS)
    frame = pd.DataFrame({name: rng.normal(size=n) for name in features.FEATURE_NAMES})
    frame["symbol"] = SYMBOLS * len(days)
    frame["date"] = np.repeat(days, len(SYMBOLS))
    frame["flat_share_20"] = np.tile(np.linspace(0, 0.9, len(SYMBOLS)), len(days))
    frame["close"] = 10.0
    moved = rng.random(n) > frame["flat_share_20"]
    up = moved & (frame["ret_1"] + rng.normal(size=n) > 0.3)
    frame["next_close"] = np.where(moved, np.where(up, 10.1, 9.9), 10.0)
    frame["target"], frame["moved"] = up.astype(int), moved.astype(int)
    frame["next_ret"] = frame["next_close"] / frame["close"] - 1
    frame["traded_value"] = np.tile(np.arange(len(SYMBOLS), 0, -1) * 1e6, len(days))
    return dataset.Dataset(frame, "test")


@pytest.fixture(scope="module")
def layout(data) -> tuple[list[evaluation.Fold], evaluation.Fold]:
    return (evaluation.walk_forward(data.dates, 3, 20, 2, 60, holdout=25),
            evaluation.holdout_fold(data.dates, 25, 2))


@pytest.mark.parametrize("name", sorted(recipes.KINDS))
def test_walk_forward_predictions_refit_on_each_folds_training_rows_only(data, layout, name):
    folds, held = layout
    recipe = recipes.get(name)
    oos = training.walk_forward_predictions(data, folds, recipe)
    expected = {"symbol", "date", "fold", "target", "moved", "next_ret", "probability", "liquidity", "regime",
                *(f"p_{b}" for b in evaluation.BASELINES)}
    assert expected <= set(oos.columns)
    assert oos["fold"].unique().tolist() == [1, 2, 3] and oos["date"].max() < held.test_start
    for fold in folds:
        rows = oos[oos["fold"] == fold.number]
        assert rows["date"].min() == fold.test_start and rows["date"].max() == fold.test_end
        assert len(rows) == 20 * len(SYMBOLS)
        train = data.frame[data.dates <= fold.train_end]
        refit = recipe.fit(train[features.FEATURE_NAMES], train["target"].to_numpy())
        test = data.X[(data.dates >= fold.test_start) & (data.dates <= fold.test_end)]
        np.testing.assert_array_equal(rows["probability"], scoring.probabilities(refit, test))
        assert (rows["p_majority"] == train["target"].mean()).all()
        assert set(rows["liquidity"]) == {"low", "mid", "high"}


def test_the_served_model_is_fit_before_the_holdout_and_scored_on_it(data, layout):
    _, held = layout
    recipe = recipes.get("logreg")
    model, holdout = training.fit_and_predict(data, held, recipe)
    assert holdout["date"].min() == held.test_start and holdout["date"].max() == data.dates.max()
    assert (holdout["fold"] == 0).all()
    before = data.frame[data.dates <= held.train_end]
    assert before["date"].max() < held.test_start
    refit = recipe.fit(before[features.FEATURE_NAMES], before["target"].to_numpy())
    np.testing.assert_array_equal(model.named_steps["logreg"].coef_, refit.named_steps["logreg"].coef_)
    assert (holdout["p_majority"] == before["target"].mean()).all()


@pytest.fixture(scope="module")
def trained(data, layout) -> Callable[[str | None], training.TrainResult]:
    """A logreg walk-forward and holdout on the synthetic data; the TrainResult for a given registered version."""
    folds, held = layout
    recipe = recipes.get("logreg")
    oos = training.walk_forward_predictions(data, folds, recipe)
    model, holdout = training.fit_and_predict(data, held, recipe)
    judged = evaluation.report(oos, holdout)
    return lambda version: training.TrainResult("9f1c2d", version, judged.metrics, folds, model, recipe, held, judged,
                                                {"features_s": 1.0})


def test_summary_lines_put_the_model_beside_every_baseline_and_the_strongest(trained):
    result = trained(None)
    judged = result.evaluation
    text = "\n".join(training.summary_lines(result, "roc_auc"))
    assert "AUC moved" in text and "rank IC" in text and "holdout (served model)" in text
    assert all(short in text for short in training.SHORT_NAMES.values())
    strongest = judged.versus["cv"]["roc_auc"]
    assert f"{training.SHORT_NAMES[strongest.baseline]} ({strongest.edge:+.4f})" in text
    assert f"on the last fold: {judged.metrics['last_fold_roc_auc']:.4f}" in text


def test_the_first_summary_line_names_the_registered_version(trained):
    """`make demo` trains with `dse train` in a process of its own and reads the version from this line."""
    lines = {version: training.summary_lines(trained(version), "roc_auc") for version in ("12", None)}
    assert training.registered_version(lines["12"][0] + "\n") == "12"
    assert training.registered_version(lines[None][0]) is None  # "(not registered)"
    assert not any(training.registered_version(line) for line in lines["12"][1:])
