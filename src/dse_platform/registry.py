"""The MLflow model registry: which version serves, loading it safely, and the champion/challenger gate.

The serving pointer is the alias ``production`` (DSE_MODEL_ALIAS) on the
registered model ``dse-direction``; setting it in the MLflow UI is as valid as
`dse promote`. A legacy stage "Production" is honoured when no alias exists.
A model is only served when its signature lists exactly the feature module's
columns and it was trained with the current feature version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass

import httpx
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from scipy.special import expit
from sklearn.pipeline import Pipeline

import mlflow
from dse_platform import dataset, evaluation, features, serving_db
from dse_platform.config import Settings
from dse_platform.errors import PlatformError

GATE_EXPERIMENT = "dse-direction-gate"


@dataclass(frozen=True)
class ModelRef:
    """One registered version and how it was found (``alias`` or legacy ``stage``)."""

    name: str
    version: str
    run_id: str
    feature_version: str | None
    found_by: str


@dataclass(frozen=True)
class Decision:
    promoted: bool
    challenger: str
    champion: str | None
    metric: str
    challenger_score: float
    champion_score: float | None
    baseline_scores: dict[str, float]
    window: str
    reason: str


def connect(settings: Settings) -> MlflowClient:
    """A client for the configured tracking server, failing fast with a clear error when it is down."""
    # MLflow retries an unreachable server for minutes by default; a registry outage should show at once.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = settings.tracking_uri
    if uri.startswith("http"):
        try:
            httpx.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            raise PlatformError(f"the MLflow registry at {uri} is unreachable ({exc})",
                                "start it with `dse up` or point DSE_MLFLOW_TRACKING_URI at a running server") from exc
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = MlflowClient(settings.tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)


def _ref(client: MlflowClient, mv, found_by: str) -> ModelRef:
    return ModelRef(mv.name, str(mv.version), mv.run_id, (mv.tags or {}).get("feature_version"), found_by)


def production_ref(settings: Settings, client: MlflowClient | None = None) -> ModelRef | None:
    """The version serving should use: the alias, else the newest legacy "Production" stage, else None."""
    client = client or connect(settings)
    name = settings.model_name
    try:
        return _ref(client, client.get_model_version_by_alias(name, settings.model_alias), "alias")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
    staged = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.current_stage == "Production"]
    if not staged:
        return None
    return _ref(client, max(staged, key=lambda mv: int(mv.version)), "stage")


def load(settings: Settings, ref: ModelRef) -> Pipeline:
    """The version's scikit-learn pipeline, after checking it fits the feature module."""
    uri = f"models:/{ref.name}/{ref.version}"
    if ref.feature_version != features.FEATURE_VERSION:
        raise PlatformError(
            f"{ref.name} version {ref.version} was trained with feature version {ref.feature_version}, "
            f"this code computes version {features.FEATURE_VERSION}",
            "retrain (`dse train`) and promote a model of the current feature version")
    info = mlflow.models.get_model_info(uri)
    inputs = info.signature.inputs.input_names() if info.signature else None
    if inputs != features.FEATURE_NAMES:
        raise PlatformError(
            f"{ref.name} version {ref.version} has input signature {inputs}, the feature module produces "
            f"{features.FEATURE_NAMES}", "retrain with `dse train` so the signature matches the features")
    return mlflow.sklearn.load_model(uri)


def probabilities(model: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """P(up) of each row, computed row by row in a fixed order.

    A BLAS matrix product may round a row's logit differently depending on the batch
    around it; this way a row scores to the same bits in any micro-batch, which is
    what makes a replayed batch write identical predictions.
    """
    steps = model.named_steps
    if set(steps) != {"scale", "logreg"}:
        return model.predict_proba(X)[:, 1]
    scaler, logreg = steps["scale"], steps["logreg"]
    z = (X.to_numpy(float) - scaler.mean_) / scaler.scale_
    return expit((z * logreg.coef_[0]).sum(axis=1) + logreg.intercept_[0])


def _gate_rows(settings: Settings, run) -> tuple[pd.DataFrame, str]:
    tags = run.data.tags
    start = dt.date.fromisoformat(tags["gate_window_start"])
    end = dt.date.fromisoformat(tags["gate_window_end"])
    data = dataset.build(settings.store_dir, start=start, end=dt.date.fromisoformat(tags["data_end"]))
    frame = data.frame[data.frame["date"] <= end]
    return frame, f"{start}..{end}"


def evaluate_gate(settings: Settings, client: MlflowClient, challenger: ModelRef,
                  champion: ModelRef | None) -> Decision:
    """Compare the challenger with the champion on the challenger's last out-of-sample window.

    The challenger's score is its walk-forward score there (a model trained before the
    window). The champion is scored on the same rows as it is; if it was trained on them,
    it has the in-sample advantage, so the gate errs towards holding.
    """
    metric = settings.gate_metric
    run = client.get_run(challenger.run_id)
    logged = {k.removeprefix("last_fold_"): v for k, v in run.data.metrics.items() if k.startswith("last_fold_")}
    if not logged or "gate_window_start" not in run.data.tags:
        raise PlatformError(f"version {challenger.version} has no walk-forward results in run {challenger.run_id}",
                            "promote only versions registered by `dse train`, or use --force")
    ours = evaluation.gate_score(logged, metric)
    base = {b: evaluation.gate_score(logged, metric, f"baseline_{b}_") for b in evaluation.BASELINES}
    rows, window = _gate_rows(settings, run)
    theirs = None
    if champion is not None:
        model = load(settings, champion)
        p = model.predict_proba(rows[features.FEATURE_NAMES])[:, 1]
        theirs = evaluation.gate_score(evaluation.score(rows["target"].to_numpy(), p), metric)
    weak = [b for b, v in base.items() if not ours > v]
    if challenger.feature_version != features.FEATURE_VERSION:
        promoted, reason = False, f"feature version {challenger.feature_version} is not the current one"
    elif weak:
        promoted, reason = False, f"{metric} {ours:.4f} does not beat the baseline(s) {', '.join(weak)}"
    elif theirs is None:
        promoted, reason = True, f"no production model yet; {metric} {ours:.4f} beats both baselines"
    elif ours > theirs + settings.gate_margin:
        promoted, reason = True, (f"{metric} {ours:.4f} beats version {champion.version}'s {theirs:.4f} "
                                  f"by more than the margin {settings.gate_margin}")
    else:
        promoted, reason = False, (f"{metric} {ours:.4f} does not beat version {champion.version}'s "
                                   f"{theirs:.4f} by the margin {settings.gate_margin}")
    return Decision(promoted, challenger.version, champion.version if champion else None, metric, ours, theirs,
                    base, window, reason)


def _record(settings: Settings, decision: Decision, event: str, source: str) -> None:
    """The decision as an MLflow run of the gate experiment and as a `model_events` row."""
    mlflow.set_experiment(GATE_EXPERIMENT)
    with mlflow.start_run(run_name=f"{event}-v{decision.challenger}"):
        mlflow.set_tags({"decision": event, "challenger": decision.challenger,
                         "champion": decision.champion or "none", "reason": decision.reason[:500]})
        mlflow.log_params({"metric": decision.metric, "window": decision.window, "margin": settings.gate_margin})
        mlflow.log_metrics({"challenger_score": decision.challenger_score,
                            **({"champion_score": decision.champion_score} if decision.champion_score is not None
                               else {}),
                            **{f"baseline_{k}_score": v for k, v in decision.baseline_scores.items()}})
        mlflow.log_dict(asdict(decision), "decision.json")
    engine = serving_db.engine(settings)
    serving_db.create_schema(engine)
    serving_db.record_event(engine, event, settings.model_name, version=decision.challenger,
                            previous_version=decision.champion, source=source,
                            details=json.loads(json.dumps(asdict(decision), default=str)))


def promote(settings: Settings, version: str | None = None, force: bool = False,
            source: str = "dse promote") -> Decision:
    """Run the gate for ``version`` (default: the newest) and move the alias only if it passes.

    ``force`` moves the alias without the gate (for people; recorded as ``forced``).
    """
    client = connect(settings)
    name = settings.model_name
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise PlatformError(f"no versions of {name} in the registry at {settings.tracking_uri}",
                            "train one first: `dse train`")
    chosen = [mv for mv in versions if version is None or str(mv.version) == str(version)]
    if not chosen:
        raise PlatformError(f"{name} has no version {version}",
                            f"pick one of {sorted(int(mv.version) for mv in versions)} (`dse models`)")
    challenger = _ref(client, max(chosen, key=lambda mv: int(mv.version)), "request")
    champion = production_ref(settings, client)
    if champion is not None and champion.version == challenger.version and champion.found_by == "alias":
        raise PlatformError(f"version {challenger.version} is already {settings.model_alias}",
                            "train a new version first, or name another with --version")
    if force:
        decision = Decision(True, challenger.version, champion.version if champion else None, settings.gate_metric,
                            float("nan"), None, {}, "", "forced by a person, gate skipped")
        event = "forced"
    else:
        decision = evaluate_gate(settings, client, challenger, champion)
        event = "promoted" if decision.promoted else "held"
    if decision.promoted:
        client.set_registered_model_alias(name, settings.model_alias, challenger.version)
    _record(settings, decision, event, source)
    return decision


def list_models(settings: Settings) -> pd.DataFrame:
    """Every version with its aliases, feature version and headline walk-forward metrics."""
    client = connect(settings)
    rows = []
    for mv in client.search_model_versions(f"name='{settings.model_name}'"):
        # search results may omit aliases: ask for each version itself
        full = client.get_model_version(mv.name, mv.version)
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        rows.append({"version": int(mv.version), "aliases": ",".join(full.aliases or []),
                     "stage": mv.current_stage, "feature_version": (mv.tags or {}).get("feature_version"),
                     "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
                     .strftime("%Y-%m-%d %H:%M"),
                     **{m: metrics.get(f"oos_{m}") for m in ("roc_auc", "accuracy", "log_loss")},
                     f"gate_{settings.gate_metric}": evaluation.gate_score(
                         {k.removeprefix("last_fold_"): v for k, v in metrics.items()}, settings.gate_metric)
                     if f"last_fold_{settings.gate_metric.removeprefix('neg_')}" in metrics else None})
    return pd.DataFrame(rows).sort_values("version", ascending=False) if rows else pd.DataFrame()
