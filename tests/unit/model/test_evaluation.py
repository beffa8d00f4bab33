"""Evaluation on constructed cases: folds and holdout, baselines, per-fold, moved-only and per-date metrics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from dse_platform.errors import PlatformError
from dse_platform.model import evaluation
from tests.unit.model.synthetic import sessions

DAYS = sessions(40)


def _window(seed: int, days: list[dt.date], per_day: int = 30, fold: int = 1) -> pd.DataFrame:
    """A scored window: random targets and returns, a model that knows a little, every baseline column."""
    rng = np.random.default_rng(seed)
    n = len(days) * per_day
    ret = rng.normal(0, 0.02, n) * (rng.random(n) < 0.6)
    frame = pd.DataFrame({"symbol": [f"S{i}" for i in range(per_day)] * len(days),
                          "date": np.repeat(days, per_day), "next_ret": ret, "fold": fold})
    frame["target"] = (ret > 0).astype(int)
    frame["moved"] = (ret != 0).astype(int)
    frame["probability"] = 1 / (1 + np.exp(-(frame["target"] - 0.5 + rng.normal(0, 1.5, n))))
    for name in evaluation.BASELINES:
        frame[f"p_{name}"] = rng.uniform(0.2, 0.6, n)
        frame[f"call_{name}"] = (frame[f"p_{name}"] >= 0.5).astype(int)
    return frame


# ---- folds and holdout --------------------------------------------------------------------------

def test_holdout_is_never_inside_a_fold_and_the_purge_separates_them():
    dates = np.array(sessions(400))
    folds = evaluation.walk_forward(dates, 3, 50, 5, 100, holdout=60)
    held = evaluation.holdout_fold(dates, 60, 5)
    assert (held.number, held.test_start, held.test_end) == (0, dates[-60], dates[-1])
    for fold in folds:
        assert fold.test_end < held.test_start and fold.train_end < held.test_start
    assert folds[-1].test_end == held.train_end == dates[-66]
    assert list(dates).index(held.test_start) - list(dates).index(held.train_end) == 6
    assert evaluation.holdout_fold(dates, 0, 5) is None
    assert evaluation.walk_forward(dates, 3, 50, 5, 100)[-1].test_end == dates[-1]


def test_a_holdout_that_leaves_too_little_data_names_the_setting():
    dates = np.array(sessions(300))
    evaluation.walk_forward(dates, 3, 50, 5, 100)
    with pytest.raises(PlatformError, match="60 holdout") as err:
        evaluation.walk_forward(dates, 3, 50, 5, 100, holdout=60)
    assert "DSE_TRAIN_HOLDOUT_SESSIONS" in err.value.fix


def test_regime_follows_the_declared_floor_price_periods():
    days = [dt.date(2020, 3, 18), dt.date(2020, 3, 19), dt.date(2021, 6, 2), dt.date(2021, 6, 3),
            dt.date(2022, 7, 28), dt.date(2022, 7, 31), dt.date(2024, 1, 17), dt.date(2024, 1, 18)]
    assert evaluation.regime(days).tolist() == ["free", "floor", "floor", "free"] * 2


def test_liquidity_buckets_rank_instruments_on_training_rows_only():
    train = pd.DataFrame({"symbol": ["A", "B", "C", "D", "E", "F"] * 2, "date": np.repeat(DAYS[:2], 6),
                          "traded_value": [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6.0]})
    test = pd.DataFrame({"symbol": ["F", "A", "C", "D", "NEW"], "traded_value": [0.0, 1e9, 0, 0, 1e9]})
    assert evaluation.liquidity_buckets(train, test).tolist() == ["high", "low", "mid", "mid", "new"]


# ---- baselines ----------------------------------------------------------------------------------

def _train_test() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame({"symbol": ["A"] * 6 + ["B"] * 4, "target": [1, 1, 1, 0, 1, 1, 0, 0, 0, 0],
                          "ret_1": [0.1, 0.2, -0.1, 0.0, 0.3, 0.1, -0.1, 0.0, 0.0, 0.1],
                          "flat_share_20": [0.0, 0.1, 0.0, 0.2, 0.1, 0.0, 0.9, 0.8, 1.0, 0.9]})
    test = pd.DataFrame({"symbol": ["A", "B", "C"], "target": [0, 1, 1], "ret_1": [0.1, -0.2, 0.0],
                         "flat_share_20": [0.0, 1.0, 0.5]})
    return train, test


def test_baselines_are_fitted_on_the_training_rows_only():
    train, test = _train_test()
    base = evaluation.baselines(train, test)
    assert base["majority"][0].tolist() == [0.5] * 3 and base["majority"][1].tolist() == [1, 1, 1]
    assert base["always_up"][1].tolist() == [1, 1, 1]
    # after an up day (ret_1 > 0) the targets are 1, 1, 1, 1, 0 -> 0.8; after other days 1, 0, 0, 0, 0 -> 0.2
    np.testing.assert_allclose(base["yesterday_sign"][0], [0.8, 0.2, 0.2])
    assert base["yesterday_sign"][1].tolist() == [1, 0, 0]
    prior = evaluation.INSTRUMENT_PRIOR_ROWS
    np.testing.assert_allclose(base["instrument_rate"][0],
                               [(5 + prior * 0.5) / (6 + prior), (0 + prior * 0.5) / (4 + prior), 0.5])
    illiquid = base["illiquidity"][0]
    assert illiquid[0] > 0.5 > illiquid[1] and illiquid[0] > illiquid[2] > illiquid[1]

    flipped = test.assign(target=1 - test["target"], symbol=["A", "B", "C"])
    again = evaluation.baselines(train, flipped)
    for name in evaluation.BASELINES:
        np.testing.assert_array_equal(again[name][0], base[name][0])
    changed = evaluation.baselines(train.assign(target=1 - train["target"]), test)
    assert changed["majority"][0][0] == 0.5 and changed["majority"][1][0] == 1
    assert changed["instrument_rate"][0][0] < 0.5 < base["instrument_rate"][0][0]


def test_single_class_training_rows_give_constant_rule_baselines():
    train, test = _train_test()
    base = evaluation.baselines(train.assign(target=0), test)
    assert base["illiquidity"][0].tolist() == [0.0] * 3 and base["majority"][1].tolist() == [0, 0, 0]


# ---- metrics ------------------------------------------------------------------------------------

def test_score_matches_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.uniform(0, 1, 500), 2)  # rounded: ties must count half
    calls = rng.integers(0, 2, 500)
    got = evaluation.score(y, p, calls)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, calls))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, calls))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-6, 1 - 1e-6)))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert np.isnan(evaluation.score(np.ones(5), p[:5])["roc_auc"])


def test_moved_metrics_score_only_rows_whose_close_moved():
    frame = _window(1, DAYS[:10])
    # unchanged closes the model "knows" perfectly: they must not lift the moved-only figures
    frame.loc[frame["moved"] == 0, "probability"] = 0.01
    got = evaluation.score_window(frame)
    moved = frame[frame["moved"] == 1]
    assert got["moved_roc_auc"] == pytest.approx(skm.roc_auc_score(moved["target"], moved["probability"]))
    assert got["roc_auc"] > got["moved_roc_auc"] + 0.1
    assert got["moved_rows"] == len(moved) and got["rows"] == len(frame)


def test_per_date_auc_and_rank_ic_are_each_dates_own_cross_section():
    frame = _window(2, DAYS[:6])
    per_date = evaluation.date_values(frame)
    for day, rows in frame.groupby("date"):
        assert per_date.loc[day, "date_auc"] == pytest.approx(skm.roc_auc_score(rows["target"], rows["probability"]))
        rho = stats.spearmanr(rows["probability"], rows["next_ret"]).statistic
        assert per_date.loc[day, "date_ic"] == pytest.approx(rho)
        moved = rows[rows["moved"] == 1]
        assert per_date.loc[day, "moved_date_ic"] == pytest.approx(
            stats.spearmanr(moved["probability"], moved["next_ret"]).statistic)
        assert per_date.loc[day, "baseline_illiquidity_date_auc"] == pytest.approx(
            skm.roc_auc_score(rows["target"], rows["p_illiquidity"]))
    assert evaluation.score_window(frame)["date_auc"] == pytest.approx(per_date["date_auc"].mean())


def test_a_constant_predictor_has_ic_zero_and_a_flat_day_has_none():
    frame = _window(4, DAYS[:2])
    frame["p_majority"] = 0.3
    frame.loc[frame["date"] == DAYS[1], "next_ret"] = 0.0
    per_date = evaluation.date_values(frame)
    assert per_date.loc[DAYS[0], "baseline_majority_date_ic"] == 0.0
    assert per_date.loc[DAYS[0], "baseline_majority_date_auc"] == 0.5
    assert np.isnan(per_date.loc[DAYS[1], "date_ic"])


def test_interval_is_a_t_interval_over_dates():
    values = np.array([0.1, 0.3, 0.2, 0.4, np.nan])
    mean, low, high = evaluation.interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values[:4], ddof=1) / 2
    assert (mean, low, high) == pytest.approx((0.25, 0.25 - half, 0.25 + half))
    assert np.isnan(evaluation.interval(np.array([0.5]))[1])


def test_folds_are_summarised_by_mean_and_spread_never_pooled():
    # each fold's "model" is a constant at that fold's own base rate: it ranks nothing in any fold,
    # although the two folds pooled would give it an AUC far from 0.5
    first, second = _window(5, DAYS[:10], fold=1), _window(6, DAYS[10:20], fold=2)
    first["target"], second["target"] = (first["next_ret"] > 0.01).astype(int), (second["next_ret"] > -0.01).astype(int)
    first["probability"], second["probability"] = first["target"].mean(), second["target"].mean()
    oos = pd.concat([first, second], ignore_index=True)
    pooled = skm.roc_auc_score(oos["target"], oos["probability"])
    assert abs(pooled - 0.5) > 0.1
    per_fold, per_date = evaluation.walk_forward_scores(oos)
    summary = evaluation.across_folds(per_fold)
    assert [f["roc_auc"] for f in per_fold] == [0.5, 0.5]
    assert summary["cv_mean_roc_auc"] == 0.5 and summary["cv_sd_roc_auc"] == 0.0
    assert summary["cv_mean_log_loss"] == pytest.approx(np.mean([f["log_loss"] for f in per_fold]))
    assert len(per_date) == 20


def test_versus_names_the_strongest_baseline_for_each_direction():
    metrics = {"cv_mean_roc_auc": 0.60, "cv_mean_log_loss": 0.66}
    values = {"majority": (0.50, 0.69), "always_up": (0.50, 0.69), "yesterday_sign": (0.55, 0.70),
              "instrument_rate": (0.58, 0.65), "illiquidity": (np.nan, 0.67)}
    for name, (auc, loss) in values.items():
        metrics[f"cv_mean_baseline_{name}_roc_auc"] = auc
        metrics[f"cv_mean_baseline_{name}_log_loss"] = loss
    found = evaluation.versus(metrics, "cv_mean_")
    assert (found["roc_auc"].baseline, found["roc_auc"].baseline_value) == ("instrument_rate", 0.58)
    assert found["roc_auc"].edge == pytest.approx(0.02) and found["roc_auc"].beats
    assert found["log_loss"].baseline == "instrument_rate"
    assert found["log_loss"].edge == pytest.approx(-0.01) and not found["log_loss"].beats
    assert "accuracy" not in found


def test_report_holds_every_scope_and_the_edges():
    oos = pd.concat([_window(7, DAYS[:10], fold=1), _window(8, DAYS[10:20], fold=2)], ignore_index=True)
    oos["liquidity"] = np.where(oos["symbol"].isin(["S1", "S2", "S3"]), "low", "high")
    oos["regime"] = np.where(oos["date"] < DAYS[5], "floor", "free")
    holdout = _window(9, DAYS[25:35], fold=0)
    got = evaluation.report(oos, holdout)
    m = got.metrics
    assert m["last_fold_roc_auc"] == got.per_fold[-1]["roc_auc"]
    for metric in evaluation.ALL_METRICS:
        for scope in ("cv_mean_", "cv_sd_", "holdout_", "last_fold_"):
            assert f"{scope}{metric}" in m
            assert all(f"{scope}baseline_{b}_{metric}" in m for b in evaluation.BASELINES)
        assert m[f"cv_edge_{metric}"] == got.versus["cv"][metric].edge
        assert m[f"holdout_edge_{metric}"] == got.versus["holdout"][metric].edge
    for metric in evaluation.ALL_DATE_METRICS:
        assert m[f"dates_low_{metric}"] < m[f"dates_mean_{metric}"] < m[f"dates_high_{metric}"]
        assert m[f"holdout_dates_low_{metric}"] < m[f"holdout_{metric}"] < m[f"holdout_dates_high_{metric}"]
    assert "by_liquidity_mid_cv_mean_roc_auc" not in m
    # the floor regime exists in fold 1 only: its fold mean is fold 1's figure
    floor = oos[(oos["regime"] == "floor")]
    assert m["by_regime_floor_cv_mean_roc_auc"] == pytest.approx(
        skm.roc_auc_score(floor["target"], floor["probability"]))
    assert np.isnan(m["by_regime_floor_cv_sd_roc_auc"])
    assert evaluation.report(oos, None).versus.keys() == {"cv"}
