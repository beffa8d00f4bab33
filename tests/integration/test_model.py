"""The model lifecycle on the real shipped data: no leakage, honest folds, the gate, and MLflow round trips."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid

import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import mlflow
from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.data.instruments import DSEX, is_index
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from dse_platform.model import dataset, evaluation, features, gate, recipes, registry, training
from dse_platform.runtime import demo
from dse_platform.serving import database
from tests.support.platform import free_port

# 40 instruments (every tenth of the shipped ones) plus the DSEX index keep each training run to seconds.
INDEX = DSEX


@pytest.fixture(scope="module")
def bars(shipped_store) -> pd.DataFrame:
    _, target = shipped_store
    frame = features.drop_synthetic(store.read_bars(target))
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def symbols(bars) -> list[str]:
    codes = sorted(bars["symbol"].unique())
    return [INDEX, *[c for c in codes if not is_index(c)][::10][:40]]


# ---- features: one definition, no look-ahead -----------------------------------------------------

def test_features_declare_version_lookback_and_names():
    assert features.FEATURE_VERSION and features.LOOKBACK >= 20
    assert len(features.FEATURE_NAMES) == len(set(features.FEATURE_NAMES)) >= 15


def test_changing_bars_after_t_never_changes_features_at_or_before_t(bars, symbols):
    rng = np.random.default_rng(7)
    sample = bars[bars["symbol"].isin(symbols[:12])].reset_index(drop=True)
    before = features.compute(sample)
    for cut in (dt.date(2019, 6, 3), dt.date(2022, 1, 10), dt.date(2025, 3, 2)):
        later = sample["date"] > cut
        assert later.any() and (~later).any()
        changed = sample.copy()
        for col in ("open", "high", "low", "close", "volume"):
            changed.loc[later, col] *= rng.uniform(0.5, 1.5, later.sum())
        # also drop some later bars entirely: the past must not notice
        changed = changed.drop(changed.index[later.to_numpy()][::3])
        after = features.compute(changed)
        past = sample.index[~later.to_numpy()]
        pd.testing.assert_frame_equal(after.loc[past], before.loc[past], check_exact=True)
        moved = after.index.intersection(sample.index[later.to_numpy()])
        assert not after.loc[moved].equals(before.loc[moved]), "the change after t must show after t"


def test_predictions_at_or_before_t_ignore_later_bars(bars, symbols):
    sample = bars[bars["symbol"].isin(symbols[:8])].reset_index(drop=True)
    feats = features.compute(sample)
    ok = feats["valid"].to_numpy()
    model = LogisticRegression().fit(feats.loc[ok, features.FEATURE_NAMES], np.arange(ok.sum()) % 2)
    cut = dt.date(2023, 5, 15)
    changed = sample.copy()
    changed.loc[changed["date"] > cut, "close"] *= 3
    refeats = features.compute(changed)
    past = ok & (sample["date"] <= cut).to_numpy()
    np.testing.assert_array_equal(model.predict_proba(feats.loc[past, features.FEATURE_NAMES]),
                                  model.predict_proba(refeats.loc[past, features.FEATURE_NAMES]))


def test_a_window_of_lookback_bars_gives_the_offline_features_exactly(bars, symbols):
    """The streaming job keeps only LOOKBACK bars per instrument: that must be enough, bit for bit."""
    offline_all = features.compute(bars[bars["symbol"].isin(symbols)])
    for code in symbols[:10]:
        one = bars[bars["symbol"] == code].reset_index(drop=True)
        offline = offline_all.loc[bars.index[bars["symbol"] == code]].reset_index(drop=True)
        for i in range(features.LOOKBACK - 1, len(one), 97):
            row = features.latest(one.iloc[i - features.LOOKBACK + 1: i + 1])
            assert row["valid"] == offline.loc[i, "valid"]
            np.testing.assert_array_equal(row[features.FEATURE_NAMES].to_numpy(float),
                                          offline.loc[i, features.FEATURE_NAMES].to_numpy(float))
        short = features.compute(one.iloc[:features.LOOKBACK - 1])
        assert not short["valid"].any(), "rows without a full lookback must not be scored"


def test_compute_names_missing_columns():
    with pytest.raises(ValueError, match="volume"):
        features.compute(pd.DataFrame({"symbol": ["A"], "date": [dt.date(2024, 1, 1)], "open": [1.0],
                                       "high": [1.0], "low": [1.0], "close": [1.0]}))


# ---- target ------------------------------------------------------------------------------------

def test_target_is_the_next_session_close_and_gaps_are_excluded():
    calendar = TradingCalendar(tuple(dt.date(2024, 1, d) for d in (1, 2, 3, 4, 7, 8)),
                               ((dt.date(2024, 1, 1), dt.date(2024, 1, 8)),))
    frame = pd.DataFrame({
        "symbol": ["A"] * 5 + ["B"] * 2,
        "date": [dt.date(2024, 1, d) for d in (1, 2, 3, 7, 8)] + [dt.date(2024, 1, 7), dt.date(2024, 1, 8)],
        "close": [10, 11, 11, 9, 12, 5, 4.0],
    })
    got = dataset.targets(frame, calendar).tolist()
    # A: 1->2 up, 2->3 flat (not up), 3->7 skips session 4 (A missing): excluded, 7->8 up, 8: no next bar
    assert got[:5] == [1.0, 0.0, pytest.approx(np.nan, nan_ok=True), 1.0, pytest.approx(np.nan, nan_ok=True)]
    assert got[5:] == [0.0, pytest.approx(np.nan, nan_ok=True)]
    assert dataset.outcome(dt.date(2024, 1, 4), 9, dt.date(2024, 1, 7), 10, calendar) == 1
    assert dataset.outcome(dt.date(2024, 1, 3), 9, dt.date(2024, 1, 7), 10, calendar) is None


def test_synthetic_next_bars_exclude_the_row(shipped_store):
    _, target = shipped_store
    raw = store.read_bars(target)
    synthetic = raw[raw["quality_flags"].str.contains("synthetic")]
    data = dataset.build(target, start=dt.date(2024, 1, 1), symbols=sorted(synthetic["symbol"].unique())[:20])
    calendar = store.read_calendar(target)
    labelled = set(zip(data.frame["symbol"], data.frame["date"], strict=True))
    hits = 0
    for sym, day in zip(synthetic["symbol"], synthetic["date"], strict=True):
        if sym in set(data.frame["symbol"]) and day >= dt.date(2024, 2, 1):
            assert (sym, calendar.previous_session(day)) not in labelled
            hits += 1
    assert hits > 0


# ---- walk-forward folds ------------------------------------------------------------------------

def test_folds_never_train_on_or_after_their_test_window(symbols, shipped_store):
    _, target = shipped_store
    data = dataset.build(target, symbols=symbols)
    folds = evaluation.walk_forward(data.dates, 6, 60, 5, 250)
    sessions = np.unique(data.dates)
    assert len(folds) == 6
    for a, b in itertools.pairwise(folds):
        assert a.test_end < b.test_start
    for fold in folds:
        train_dates = data.dates[data.dates <= fold.train_end]
        assert train_dates.max() < fold.test_start
        gap = np.searchsorted(sessions, fold.test_start) - np.searchsorted(sessions, fold.train_end)
        assert gap == 5 + 1
    assert folds[-1].test_end == sessions[-1]


def test_too_little_data_for_the_folds_is_a_clear_error():
    dates = np.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(100)])
    with pytest.raises(PlatformError, match="too little data for 6 walk-forward folds") as err:
        evaluation.walk_forward(dates, 6, 60, 5, 250)
    assert "fewer folds" in err.value.fix


@pytest.fixture
def lifecycle(platform, shipped_store):
    """Settings for a fresh registered model on the session's MLflow server and serving DB."""
    _, target = shipped_store
    return platform.model_copy(update={
        "store_dir_override": target, "model_name": f"dse-direction-{uuid.uuid4().hex[:8]}",
        "train_folds": 5, "train_test_sessions": 60})


@pytest.mark.services
def test_logged_model_loads_back_and_scores_identically(lifecycle, symbols):
    result = training.train(lifecycle, symbols=symbols)
    client = MlflowClient(lifecycle.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["feature_version"] == features.FEATURE_VERSION
    assert len(run.data.tags["data_digest"]) == 64
    assert run.data.params["features"] == ",".join(features.FEATURE_NAMES)
    for name in evaluation.ALL_METRICS:
        for scope in ("cv_mean_", "cv_sd_", "holdout_"):
            assert f"{scope}{name}" in run.data.metrics
            for base in evaluation.BASELINES:
                assert f"{scope}baseline_{base}_{name}" in run.data.metrics
    assert len(client.get_metric_history(result.run_id, "fold_roc_auc")) == 5
    assert run.data.params["recipe"] == lifecycle.train_recipe
    assert run.data.tags["holdout_start"] > run.data.tags["gate_window_end"]
    artifacts = {a.path for folder in ("reports", "evaluation") for a in client.list_artifacts(result.run_id, folder)}
    assert {"reports/calibration.png", "reports/backtest.png", "reports/backtest.html",
            "evaluation/oos_predictions.parquet", "evaluation/holdout_predictions.parquet"} <= artifacts

    rows = dataset.build(lifecycle.store_dir, start=dt.date(2025, 1, 1), symbols=symbols).X
    uri = f"models:/{lifecycle.model_name}/{result.version}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    expected = result.model.predict_proba(rows)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(rows)), expected)
    np.testing.assert_array_equal(mlflow.sklearn.load_model(uri).predict_proba(rows), expected)
    info = mlflow.models.get_model_info(uri)
    assert info.signature.inputs.input_names() == features.FEATURE_NAMES
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def _noise_store(real_store, path, symbols, seed: int):
    """A store of random walks on the real sessions: a model trained on it has learned nothing.

    Real data cannot guarantee that one real model is worse than another on a window;
    the gate test needs that property, so the worse model is trained on noise.
    """
    rng = np.random.default_rng(seed)
    calendar = store.read_calendar(real_store)
    days = [d for d in calendar.sessions if dt.date(2018, 1, 1) <= d <= dt.date(2025, 8, 24)]
    frames = []
    for code in symbols:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
        opn = close * np.exp(rng.normal(0, 0.005, len(days)))
        frames.append(pd.DataFrame({
            "symbol": code, "date": days, "open": opn, "close": close,
            "high": np.maximum(opn, close) * (1 + rng.uniform(0, 0.01, len(days))),
            "low": np.minimum(opn, close) * (1 - rng.uniform(0, 0.01, len(days))),
            "volume": rng.lognormal(10, 1, len(days)).round(), "trades": pd.array([1] * len(days), "Int64"),
            "value_mn": np.nan, "sector": None, "category": None, "quality_flags": "", "source_file": "noise"}))
    store.write_store(path, pd.concat(frames, ignore_index=True), calendar, {})
    return path


def _register_plain(cfg, model: Pipeline, X: pd.DataFrame) -> str:
    """A version logged the way a person might outside `dse train`: the model alone, no recipe to refit."""
    registry.configure(cfg)  # the tracking URI and the server's login
    mlflow.set_experiment("dse-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
                                        signature=infer_signature(X.head(5), model.predict_proba(X.head(5))),
                                        registered_model_name=cfg.model_name)
    version = str(info.registered_model_version)
    registry.tag_version(cfg, version, {"feature_version": features.FEATURE_VERSION})
    return version


@pytest.mark.services
def test_gate_decides_on_paired_out_of_sample_rows_and_records_every_decision(lifecycle, symbols, tmp_path):
    """Every path of the gate on real rows (40 instruments, the last 60-session window, the default policy)."""
    client = MlflowClient(lifecycle.tracking_uri)
    noise_store = _noise_store(lifecycle.store_dir, tmp_path / "noise", symbols, seed=1)
    noise = dataset.build(noise_store, symbols=symbols)
    # a champion that learned from noise, logged without a recipe and put in place by a person
    weak = _register_plain(lifecycle, recipes.get("logreg").fit(noise.X, noise.y), noise.X)
    assert gate.promote(lifecycle, weak, force=True).promoted

    real = training.train(lifecycle, symbols=symbols)  # the default recipe, hgb
    better = gate.promote(lifecycle, real.version)
    assert better.promoted and better.champion == weak, better.reason
    assert "scored as served" in better.reason and "beats the strongest baseline" in better.reason
    assert better.figures["challenger_vs_champion_lower"] > lifecycle.gate_margin, better.figures
    assert client.get_model_version_by_alias(lifecycle.model_name, "production").version == real.version
    served = mlflow.pyfunc.load_model(f"models:/{lifecycle.model_name}@production")
    assert served.metadata.run_id == real.run_id

    # the champion's own recipe trained on noise: it beats no baseline
    worse = training.train(lifecycle.model_copy(update={"store_dir_override": noise_store}), symbols=symbols)
    held = gate.promote(lifecycle, worse.version)
    assert not held.promoted and "does not beat the strongest baseline" in held.reason, held.reason

    # fewer trees: the champion's recipe is refit at the challenger's cutoff and the two cannot be told apart
    twin = training.train(lifecycle.model_copy(update={"train_hgb_iterations": 55}), symbols=symbols)
    same = gate.promote(lifecycle, twin.version)
    assert not same.promoted and "not distinguishable from the champion" in same.reason, same.reason
    assert "refit at the challenger's cutoff" in same.reason
    assert abs(same.figures["challenger_vs_champion_difference"]) < 0.02, same.figures

    # the champion's own recipe retrained: refit at the same cutoff it is the challenger itself, so it is held
    again = training.train(lifecycle, symbols=symbols)
    stale = gate.promote(lifecycle, again.version)
    assert not stale.promoted and "not distinguishable from the champion" in stale.reason, stale.reason
    assert "the same recipe" in stale.reason and stale.figures["challenger_vs_champion_difference"] == 0
    assert client.get_model_version_by_alias(lifecycle.model_name, "production").version == real.version

    events = database.read_events(database.engine(lifecycle), limit=200)
    mine = events[events["model_name"] == lifecycle.model_name]
    assert mine["event"].tolist()[:5] == ["held", "held", "held", "promoted", "forced"]
    assert mine["version"].tolist()[:5] == [again.version, twin.version, worse.version, real.version, weak]
    gate_runs = mlflow.search_runs(experiment_names=[gate.GATE_EXPERIMENT],
                                   filter_string=f"tags.challenger = '{twin.version}'")
    assert (gate_runs["tags.decision"] == "held").any()
    assert (gate_runs["params.policy_confidence"] == str(lifecycle.gate_confidence)).all()


@pytest.mark.services
def test_force_and_legacy_stage_and_bad_versions(lifecycle, symbols):
    client = MlflowClient(lifecycle.tracking_uri)
    a = training.train(lifecycle, symbols=symbols, cutoff=dt.date(2021, 12, 31), folds=3)
    assert registry.production_ref(lifecycle) is None
    # legacy stage is honoured while no alias exists
    client.transition_model_version_stage(lifecycle.model_name, a.version, "Production")
    ref = registry.production_ref(lifecycle)
    assert (ref.version, ref.found_by) == (a.version, "stage")
    forced = gate.promote(lifecycle, a.version, force=True)
    assert forced.promoted and registry.production_ref(lifecycle).found_by == "alias"

    # a version of another feature version is never served, and the gate refuses it
    b = training.train(lifecycle, symbols=symbols, cutoff=dt.date(2021, 12, 31), folds=3)
    client.set_model_version_tag(lifecycle.model_name, b.version, "feature_version", "0")
    with pytest.raises(PlatformError, match="feature version 0"):
        registry.load(lifecycle, registry.ModelRef(lifecycle.model_name, b.version, b.run_id, "0", "request"))
    refused = gate.promote(lifecycle, b.version)
    assert not refused.promoted and "feature version" in refused.reason
    assert registry.production_ref(lifecycle).version == a.version

    # a model whose signature does not match the feature module
    mlflow.set_experiment("dse-tests")
    with mlflow.start_run():
        X = pd.DataFrame({"close": [1.0, 2.0, 3.0, 4.0]})
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, [0, 1, 0, 1]), name="model",
                                        input_example=X, registered_model_name=lifecycle.model_name)
    client.set_model_version_tag(lifecycle.model_name, info.registered_model_version, "feature_version",
                                 features.FEATURE_VERSION)
    with pytest.raises(PlatformError, match="input signature"):
        registry.load(lifecycle, registry.ModelRef(lifecycle.model_name, str(info.registered_model_version),
                                                   info.run_id, features.FEATURE_VERSION, "request"))
    with pytest.raises(PlatformError, match="no version 999"):
        gate.promote(lifecycle, "999")
    models = registry.list_models(lifecycle)
    assert models.loc[models["version"] == int(a.version), "aliases"].item() == "production"


def test_unreachable_registry_is_a_clear_error():
    down = Settings(_env_file=None, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PlatformError, match="unreachable") as err:
        gate.promote(down)
    assert "dse up" in err.value.fix


def test_the_demos_first_model_stops_with_dse_trains_own_error(tmp_path, monkeypatch, capfd):
    """`make demo` trains in a `dse train` process of its own: when it registers nothing, its error reaches the
    terminal (the process's stderr is the demo's) and the demo stops instead of waiting for a model."""
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DSE_HOME", str(tmp_path))  # what the `dse train` process reads: a home with no store
    settings = Settings(_env_file=None)
    said: list[str] = []
    window = demo.Window(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    with pytest.raises(PlatformError, match="registered no model"):
        demo._first_model(settings, window, said.append)
    assert said[0].startswith("demo: no production model yet")
    assert f"error: no bar store at {settings.store_dir}" in capfd.readouterr().err
