"""`dse train`: walk-forward evaluation, a final fit up to the cutoff, everything logged to MLflow.

One MLflow run holds the parameters, per-fold and overall metrics beside the
baselines, the feature version, the data range and digest, the model (sklearn
flavour saved with skops, pyfunc answering ``predict_proba``) with its
signature, and the calibration, coefficient and backtest reports. The model is
registered as a new version of ``dse-direction``; becoming ``production`` is
the gate's decision (`gate.promote`), never training's. Fold predictions are
scored by `scoring.probabilities`, as the streaming job and the gate score.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

import mlflow
from dse_platform.config import Settings
from dse_platform.data.instruments import DSEX
from dse_platform.model import backtest, dataset, evaluation, features, registry, reports, scoring

EXPERIMENT = "dse-direction-training"


def pipeline(c: float) -> Pipeline:
    """Scaling + L2 logistic regression: coefficients comparable across features."""
    return Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=c, max_iter=500))])


@dataclass
class TrainResult:
    run_id: str
    version: str | None
    metrics: dict[str, float]
    folds: list[evaluation.Fold]
    model: Pipeline
    timings: dict[str, float] = field(default_factory=dict)


def _fold_predictions(data: dataset.Dataset, folds: list[evaluation.Fold], c: float
                      ) -> tuple[pd.DataFrame, list[dict[str, float]]]:
    """Out-of-sample probabilities of every fold's test rows, and each fold's metrics."""
    frame, X, y, dates = data.frame, data.X, data.y, data.dates
    pieces, per_fold = [], []
    for fold in tqdm(folds, desc="walk-forward folds", unit="fold"):
        train = dates <= fold.train_end
        test = (dates >= fold.test_start) & (dates <= fold.test_end)
        model = pipeline(c).fit(X[train], y[train])
        p = scoring.probabilities(model, X[test])
        base = evaluation.baselines(y[train], frame["ret_1"].to_numpy()[train], frame["ret_1"].to_numpy()[test])
        per_fold.append(evaluation.score_with_baselines(y[test], p, base) | {"rows": float(test.sum())})
        piece = frame.loc[test, ["symbol", "date", "close", "next_close", "ret_1", "target"]].copy()
        piece["probability"] = p
        piece["fold"] = fold.number
        for name, (bp, calls) in base.items():
            piece[f"p_{name}"], piece[f"call_{name}"] = bp, calls
        pieces.append(piece)
    return pd.concat(pieces, ignore_index=True), per_fold


def _overall(oos: pd.DataFrame) -> dict[str, float]:
    base = {name: (oos[f"p_{name}"].to_numpy(), oos[f"call_{name}"].to_numpy()) for name in evaluation.BASELINES}
    return evaluation.score_with_baselines(oos["target"].to_numpy(), oos["probability"].to_numpy(), base)


def train(settings: Settings, start: dt.date | None = None, cutoff: dt.date | None = None,
          symbols: list[str] | None = None, folds: int | None = None, test_sessions: int | None = None,
          register: bool = True) -> TrainResult:
    """Evaluate walk-forward, fit the final model on everything up to ``cutoff``, log and register it."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = dataset.build(settings.store_dir, start=start, end=cutoff, symbols=symbols)
    timings["features_s"] = time.perf_counter() - t0
    fold_list = evaluation.walk_forward(data.dates, folds or settings.train_folds,
                                        test_sessions or settings.train_test_sessions,
                                        settings.train_purge_sessions, settings.train_min_sessions)
    registry.connect(settings)
    t0 = time.perf_counter()
    oos, per_fold = _fold_predictions(data, fold_list, settings.train_c)
    timings["walk_forward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = pipeline(settings.train_c).fit(data.X, data.y)
    timings["final_fit_s"] = time.perf_counter() - t0

    overall = _overall(oos)
    last = per_fold[-1]
    metrics = {f"oos_{k}": v for k, v in overall.items()}
    metrics |= {f"last_fold_{k}": v for k, v in last.items()}
    first_day, last_day = data.frame["date"].min(), data.frame["date"].max()
    t0 = time.perf_counter()
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"train-{last_day}") as run:
        mlflow.set_tags({"feature_version": data.feature_version, "data_digest": data.digest(),
                         "data_start": str(first_day), "data_end": str(last_day),
                         "gate_window_start": str(fold_list[-1].test_start),
                         "gate_window_end": str(fold_list[-1].test_end)})
        mlflow.log_params({
            "model": "StandardScaler+LogisticRegression", "C": settings.train_c,
            "feature_version": data.feature_version, "features": ",".join(features.FEATURE_NAMES),
            "lookback": features.LOOKBACK, "folds": len(fold_list), "test_sessions": test_sessions
            or settings.train_test_sessions, "purge_sessions": settings.train_purge_sessions,
            "data_start": str(first_day), "data_end": str(last_day), "rows": len(data.frame),
            "instruments": data.frame["symbol"].nunique(), "symbols": "all" if symbols is None else len(symbols)})
        for fold, values in zip(fold_list, per_fold, strict=True):
            mlflow.log_metrics({f"fold_{k}": v for k, v in values.items()}, step=fold.number)
        mlflow.log_metrics(metrics)
        folds_table = pd.DataFrame([{"fold": f.number, "train_end": f.train_end, "test_start": f.test_start,
                                     "test_end": f.test_end, **m} for f, m in zip(fold_list, per_fold, strict=True)])
        mlflow.log_table(folds_table.astype({c: str for c in ("train_end", "test_start", "test_end")}),
                         "evaluation/folds.json")
        backtested = backtest.long_flat(oos, DSEX, settings.backtest_cost_bps)
        mlflow.log_metrics({f"backtest_{k}": v for k, v in backtested.summary.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            reports.calibration_plot(oos["target"].to_numpy(), oos["probability"].to_numpy(),
                                     folder / "calibration.png")
            reports.coefficient_plot(features.FEATURE_NAMES, final.named_steps["logreg"].coef_[0],
                                     folder / "coefficients.png")
            reports.backtest_report(backtested.curves, backtested.summary, settings.backtest_cost_bps,
                                    folder / "backtest.png", folder / "backtest.html")
            mlflow.log_artifacts(tmp, "reports")
        example = data.X.head(5)
        info = mlflow.sklearn.log_model(
            final, name="model", serialization_format="skops", pyfunc_predict_fn="predict_proba",
            signature=infer_signature(example, final.predict_proba(example)), input_example=example,
            registered_model_name=settings.model_name if register else None, pip_requirements=_requirements(),
            metadata={"feature_version": data.feature_version})
        timings["mlflow_s"] = time.perf_counter() - t0
        mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
    version = str(info.registered_model_version) if register and info.registered_model_version else None
    if version:
        registry.tag_version(settings, version, {"feature_version": data.feature_version,
                                                 "data_end": str(last_day)})
    return TrainResult(run.info.run_id, version, metrics, fold_list, final, timings)


def _requirements() -> list[str]:
    """What loading the model needs, pinned to this environment (MLflow's own inference takes ~15 s)."""
    return [f"{dist}=={metadata.version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "pandas")]


def summary_lines(result: TrainResult, metric: str) -> list[str]:
    """Headline figures of a training run, model beside baselines, for the CLI and reports."""
    m = result.metrics
    lines = [f"run {result.run_id}  version {result.version or '(not registered)'}"]
    for name in evaluation.METRICS:
        lines.append(f"  {name:<18} model {m[f'oos_{name}']:.4f}   always-up "
                     f"{m[f'oos_baseline_always_up_{name}']:.4f}   yesterday's sign "
                     f"{m[f'oos_baseline_yesterday_sign_{name}']:.4f}")
    lines.append("  time: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in result.timings.items()))
    last = m.get("last_fold_" + metric.removeprefix("neg_"), np.nan)
    lines.append(f"  gate metric {metric} on the last fold: {last:.4f}")
    return lines
