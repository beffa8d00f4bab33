"""`dse train`: walk-forward evaluation, the served model fit before the holdout, everything logged to MLflow.

One MLflow run holds the parameters (the recipe and its JSON parameters, so any
logged model's recipe can be refit: `recipes.from_logged`), per-fold metrics, their
fold mean and spread, per-date AUC and rank IC with confidence intervals, the
liquidity and regime breakdowns and the holdout's figures, each beside five
baselines and the model's edge over the strongest (`evaluation.report`); the
out-of-sample and holdout predictions (``evaluation/*.parquet``); the feature
version, the data range and digest; the model (sklearn flavour saved with skops,
pyfunc answering ``predict_proba``) with its signature; and the calibration,
coefficient (logistic recipe) and backtest reports.

The logged and registered model is fit on every row before the holdout (less the
purge), never on the holdout. Its ``holdout_*`` figures are then the served model's
own out-of-sample score, measured once on sessions nothing was chosen on; a model
refit on the holdout too would be served with no honest score at all, and a month
or two more history changes a model fit on years little. With ``holdout_sessions``
0 it is fit on all rows and only the folds speak for it. Becoming ``production``
is the gate's decision (`gate.promote`), never training's. Predictions are scored
by `scoring.probabilities`, as the streaming job and the gate score.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline
from tqdm import tqdm

import mlflow
from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.data.instruments import DSEX
from dse_platform.model import backtest, dataset, evaluation, features, recipes, registry, reports, scoring

EXPERIMENT = "dse-direction-training"
#: dataset columns each prediction frame carries (close and next_close feed the backtest)
PREDICTION_COLUMNS = ["symbol", "date", "close", "next_close", "ret_1", "target", "moved", "next_ret"]
#: the baselines in `summary_lines`, short enough for one table row
SHORT_NAMES = {"majority": "majority", "always_up": "always-up", "yesterday_sign": "yday-sign",
               "instrument_rate": "instr-rate", "illiquidity": "illiquid"}


@dataclass
class TrainResult:
    run_id: str
    version: str | None
    metrics: dict[str, float]
    folds: list[evaluation.Fold]
    model: Pipeline
    recipe: recipes.Recipe
    holdout: evaluation.Fold | None
    evaluation: evaluation.Report
    timings: dict[str, float] = field(default_factory=dict)


def fit_and_predict(data: dataset.Dataset, fold: evaluation.Fold, recipe: recipes.Recipe
                    ) -> tuple[Pipeline, pd.DataFrame]:
    """``recipe`` fit on the fold's training rows, and its test rows with model and baseline probabilities."""
    frame, dates = data.frame, data.dates
    train = dates <= fold.train_end
    test = (dates >= fold.test_start) & (dates <= fold.test_end)
    seen, rows = frame[train], frame[test]
    model = recipe.fit(seen[features.FEATURE_NAMES], seen["target"].to_numpy(int))
    piece = rows[PREDICTION_COLUMNS].reset_index(drop=True)
    piece["fold"] = fold.number
    piece["probability"] = scoring.probabilities(model, rows[features.FEATURE_NAMES])
    for name, (p, calls) in evaluation.baselines(seen, rows).items():
        piece[f"p_{name}"], piece[f"call_{name}"] = p, calls
    piece["liquidity"] = evaluation.liquidity_buckets(seen, rows)
    piece["regime"] = evaluation.regime(piece["date"])
    return model, piece


def walk_forward_predictions(data: dataset.Dataset, folds: Sequence[evaluation.Fold],
                             recipe: recipes.Recipe) -> pd.DataFrame:
    """Out-of-sample predictions of ``recipe`` refit at each fold's cutoff (the gate refits challengers here).

    Columns: PREDICTION_COLUMNS, fold, probability, ``p_``/``call_<baseline>`` of every
    baseline (fitted on the fold's training rows), liquidity and regime.
    """
    pieces = [fit_and_predict(data, fold, recipe)[1] for fold in tqdm(folds, desc="walk-forward folds", unit="fold")]
    return pd.concat(pieces, ignore_index=True)


def train(settings: Settings, start: dt.date | None = None, cutoff: dt.date | None = None,
          symbols: list[str] | None = None, folds: int | None = None, test_sessions: int | None = None,
          register: bool = True, recipe: str | None = None) -> TrainResult:
    """Evaluate walk-forward, fit the served model before the holdout, score it there, log and register it."""
    chosen = recipes.get(recipe or settings.train_recipe, settings)
    test_sessions = test_sessions or settings.train_test_sessions
    purge, holdout_sessions = settings.train_purge_sessions, settings.train_holdout_sessions
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = dataset.build(settings.store_dir, start=start, end=cutoff, symbols=symbols)
    timings["features_s"] = time.perf_counter() - t0
    fold_list = evaluation.walk_forward(data.dates, folds or settings.train_folds, test_sessions, purge,
                                        settings.train_min_sessions, holdout_sessions)
    held = evaluation.holdout_fold(data.dates, holdout_sessions, purge)
    registry.connect(settings)
    t0 = time.perf_counter()
    oos = walk_forward_predictions(data, fold_list, chosen)
    timings["walk_forward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if held is None:
        final, holdout = chosen.fit(data.X, data.y), None
    else:
        final, holdout = fit_and_predict(data, held, chosen)
    timings["final_fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    judged = evaluation.report(oos, holdout)
    timings["evaluation_s"] = time.perf_counter() - t0

    first_day, last_day = data.frame["date"].min(), data.frame["date"].max()
    train_end = last_day if held is None else held.train_end
    t0 = time.perf_counter()
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"train-{last_day}") as run:
        mlflow.set_tags({"feature_version": data.feature_version, "data_digest": data.digest(),
                         "data_start": str(first_day), "data_end": str(last_day), "train_end": str(train_end),
                         "gate_window_start": str(fold_list[-1].test_start),
                         "gate_window_end": str(fold_list[-1].test_end),
                         **({"holdout_start": str(held.test_start), "holdout_end": str(held.test_end)} if held
                            else {}),
                         **{f"{scope}_strongest_{m}": v.baseline for scope, found in judged.versus.items()
                            for m, v in found.items()}})
        mlflow.log_params({
            **chosen.logged_params(), "feature_version": data.feature_version,
            "features": ",".join(features.FEATURE_NAMES), "lookback": features.LOOKBACK, "folds": len(fold_list),
            "test_sessions": test_sessions, "purge_sessions": purge, "holdout_sessions": holdout_sessions,
            "baselines": ",".join(evaluation.BASELINES), "data_start": str(first_day), "data_end": str(last_day),
            "train_end": str(train_end), "rows": len(data.frame), "instruments": data.frame["symbol"].nunique(),
            "symbols": "all" if symbols is None else len(symbols)})
        # The model first: MLflow 3's log_model re-reads the history of every metric the run already has
        # (one request each, hundreds here), and the server checks the login's password hash on each one.
        example = data.X.head(5)
        info = mlflow.sklearn.log_model(
            final, name="model", serialization_format="skops", pyfunc_predict_fn="predict_proba",
            skops_trusted_types=list(chosen.kind.trusted_types) or None,
            signature=infer_signature(example, final.predict_proba(example)), input_example=example,
            registered_model_name=settings.model_name if register else None, pip_requirements=_requirements(),
            metadata={"feature_version": data.feature_version, "recipe": chosen.name})
        for fold, values in zip(fold_list, judged.per_fold, strict=True):
            mlflow.log_metrics({f"fold_{k}": v for k, v in values.items()}, step=fold.number)
        mlflow.log_metrics(judged.metrics)
        folds_table = pd.DataFrame([{"fold": f.number, "train_end": f.train_end, "test_start": f.test_start,
                                     "test_end": f.test_end, **m}
                                    for f, m in zip(fold_list, judged.per_fold, strict=True)])
        mlflow.log_table(folds_table.astype({c: str for c in ("train_end", "test_start", "test_end")}),
                         "evaluation/folds.json")
        mlflow.log_dict({scope: {m: asdict(v) | {"edge": v.edge} for m, v in found.items()}
                         for scope, found in judged.versus.items()}, "evaluation/versus.json")
        backtested = backtest.run(oos, _backtest_bars(settings, data, oos, cutoff, symbols),
                                  settings.backtest_cost_bps, DSEX)
        mlflow.log_metrics({f"backtest_{k}": v for k, v in backtested.summary.items()})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            oos.to_parquet(folder / "oos_predictions.parquet", index=False)
            if holdout is not None:
                holdout.to_parquet(folder / "holdout_predictions.parquet", index=False)
            mlflow.log_artifacts(tmp, "evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            reports.calibration_plot(oos["target"].to_numpy(), oos["probability"].to_numpy(),
                                     folder / "calibration.png")
            if "logreg" in final.named_steps:
                reports.coefficient_plot(features.FEATURE_NAMES, final.named_steps["logreg"].coef_[0],
                                         folder / "coefficients.png")
            reports.backtest_report(backtested, folder / "backtest.png", folder / "backtest.html")
            mlflow.log_artifacts(tmp, "reports")
        timings["mlflow_s"] = time.perf_counter() - t0
        mlflow.log_metrics({f"time_{k}": v for k, v in timings.items()})
    version = str(info.registered_model_version) if register and info.registered_model_version else None
    if version:
        registry.tag_version(settings, version, {"feature_version": data.feature_version, "recipe": chosen.name,
                                                 "data_end": str(last_day), "train_end": str(train_end)})
    return TrainResult(run.info.run_id, version, judged.metrics, fold_list, final, chosen, held, judged, timings)


def _backtest_bars(settings: Settings, data: dataset.Dataset, oos: pd.DataFrame, cutoff: dt.date | None,
                   symbols: list[str] | None) -> pd.DataFrame:
    """The store's bars the backtest fills from: the predicted instruments and DSEX, from a liquidity window
    before the first prediction through the cutoff."""
    sessions = np.unique(data.dates)
    first = sessions[max(int(np.searchsorted(sessions, oos["date"].min())) - backtest.LIQUIDITY_WINDOW, 0)]
    return store.read_bars(settings.store_dir, start=first, end=cutoff,
                           symbols=None if symbols is None else [*symbols, DSEX],
                           columns=["symbol", "date", "open", "close", "volume", "value_mn", "quality_flags"])


def _requirements() -> list[str]:
    """What loading the model needs, pinned to this environment (MLflow's own inference takes ~15 s)."""
    return [f"{dist}=={metadata.version(dist)}" for dist in ("mlflow", "scikit-learn", "skops", "numpy", "pandas")]


#: (metric, label) rows of the summary table
SUMMARY_METRICS = (("roc_auc", "AUC"), ("moved_roc_auc", "AUC moved"), ("log_loss", "log loss"),
                   ("moved_log_loss", "log loss moved"), ("accuracy", "accuracy"),
                   ("balanced_accuracy", "balanced acc"), ("date_auc", "date AUC"),
                   ("moved_date_auc", "date AUC moved"), ("date_ic", "rank IC"), ("moved_date_ic", "rank IC moved"))


def _table(title: str, m: dict[str, float], versus: dict[str, evaluation.Versus],
           cell: Callable[..., str]) -> list[str]:
    head = f"  {title:<26}{'model':>15}" + "".join(f"{SHORT_NAMES[b]:>12}" for b in evaluation.BASELINES)
    lines = [head + "   strongest (edge)"]
    for metric, label in SUMMARY_METRICS:
        strongest = versus.get(metric)
        best = f"   {SHORT_NAMES[strongest.baseline]} ({strongest.edge:+.4f})" if strongest else ""
        lines.append(f"    {label:<24}{cell(m, '', metric):>15}"
                     + "".join(f"{cell(m, f'baseline_{b}_', metric, False):>12}" for b in evaluation.BASELINES)
                     + best)
    return lines


#: the first summary line, as `dse train` prints it: the run and the version it registered
_SUMMARY_HEAD = re.compile(r"^run \S+ +version (\d+) ")


def registered_version(line: str) -> str | None:
    """The version a summary's first line names (None for any other line, or a run not registered)."""
    found = _SUMMARY_HEAD.match(line)
    return found.group(1) if found else None


def summary_lines(result: TrainResult, metric: str) -> list[str]:
    """The model beside every baseline and the strongest: fold mean ± sd, per-date CIs, holdout; for the CLI."""
    m = result.metrics

    def fold_cell(m: dict[str, float], prefix: str, name: str, spread: bool = True) -> str:
        mean = m[f"cv_mean_{prefix}{name}"]
        return f"{mean:.4f}±{m[f'cv_sd_{prefix}{name}']:.3f}" if spread else f"{mean:.4f}"

    first, last = result.folds[0], result.folds[-1]
    lines = [f"run {result.run_id}  version {result.version or '(not registered)'}  recipe {result.recipe.name} "
             f"{json.dumps(result.recipe.params, sort_keys=True)}",
             *_table(f"walk-forward, {len(result.folds)} folds", m, result.evaluation.versus["cv"], fold_cell),
             f"  ({first.test_start}..{last.test_end}; fold mean ± sd across folds, nothing pooled)"]
    dated = [f"  per date over {int(sum(f['dates'] for f in result.evaluation.per_fold))} out-of-sample dates, "
             "mean [95% CI, dates as clusters]"]
    for name, label in (("date_auc", "date AUC"), ("moved_date_auc", "date AUC moved"), ("date_ic", "rank IC"),
                        ("moved_date_ic", "rank IC moved")):
        strongest = result.evaluation.versus["cv"][name]
        dated.append(f"    {label:<24}model {m[f'dates_mean_{name}']:.4f} [{m[f'dates_low_{name}']:.4f}, "
                     f"{m[f'dates_high_{name}']:.4f}]   {SHORT_NAMES[strongest.baseline]} "
                     f"{m[f'dates_mean_baseline_{strongest.baseline}_{name}']:.4f} "
                     f"[{m[f'dates_low_baseline_{strongest.baseline}_{name}']:.4f}, "
                     f"{m[f'dates_high_baseline_{strongest.baseline}_{name}']:.4f}]")
    lines += dated
    if result.holdout is not None:
        def holdout_cell(m: dict[str, float], prefix: str, name: str, spread: bool = True) -> str:
            value = m[f"holdout_{prefix}{name}"]
            if spread and f"holdout_dates_low_{prefix}{name}" in m:
                return f"{value:.3f}±{(m[f'holdout_dates_high_{prefix}{name}'] - value):.3f}"
            return f"{value:.4f}"

        lines += _table(f"holdout (served model), {int(m['holdout_rows'])} rows", m,
                        result.evaluation.versus["holdout"], holdout_cell)
        lines.append(f"  ({result.holdout.test_start}..{result.holdout.test_end}, never used to choose anything; "
                     "± on per-date rows: half the 95% CI)")
    lines.append("  time: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in result.timings.items()))
    gate = m.get("last_fold_" + metric.removeprefix("neg_"), np.nan)
    lines.append(f"  gate metric {metric} on the last fold: {gate:.4f}")
    return lines
