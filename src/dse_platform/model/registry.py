"""The MLflow model registry: which version serves, loading it safely, and the champion/challenger gate.

The serving pointer is the alias ``production`` (DSE_MODEL_ALIAS) on the
registered model ``dse-direction``; setting it in the MLflow UI is as valid as
`dse promote`. A legacy stage "Production" is honoured when no alias exists.
The alias ``challenger`` (DSE_CHALLENGER_ALIAS), when set, names the version the
streaming job scores in shadow beside it.
A model is only served when its signature lists exactly the feature module's
columns and it was trained with the current feature version, and it is only
loaded from skops with the types this code allows (`TRUSTED_TYPES`): never
pickle, and never the trusted types the model's own MLmodel file declares, since
anyone who can write to MLflow writes that file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import skops.io
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

import mlflow
from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.model import evaluation, features, recipes

#: the types beyond skops' own defaults (scikit-learn's estimators, numpy and scipy) a served model may contain:
#: those of the recipes this code trains
TRUSTED_TYPES = frozenset(t for kind in recipes.KINDS.values() for t in kind.trusted_types)


@dataclass(frozen=True)
class ModelRef:
    """One registered version and how it was found (``alias`` or legacy ``stage``)."""

    name: str
    version: str
    run_id: str
    feature_version: str | None
    found_by: str


def configure(settings: Settings) -> None:
    """Point this process's MLflow client library at the configured server, with its login.

    The one place the platform sets MLflow's tracking URI and credentials: MLflow reads the
    login (MLFLOW_TRACKING_USERNAME/PASSWORD) and its retry policy from the environment only,
    so the values from the settings go there. Without credentials in the settings, variables
    already set (e.g. by a container's environment) stay as they are.
    """
    # MLflow retries an unreachable server for minutes by default; a registry outage should show at once.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_http_timeout_s)
    if login := settings.mlflow_credentials:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = login
    mlflow.set_tracking_uri(settings.tracking_uri)


def connect(settings: Settings) -> MlflowClient:
    """A client for the configured tracking server, failing fast with a clear error when it is down."""
    configure(settings)
    uri = settings.tracking_uri
    if uri.startswith("http"):
        try:
            httpx.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
            # /health answers anyone: one protected request tells a refused login apart from an outage
            login = settings.mlflow_credentials
            if login is None and os.environ.get("MLFLOW_TRACKING_USERNAME"):
                login = os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
            probe = httpx.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": "Default"}, auth=login, timeout=5)
        except httpx.HTTPError as exc:
            raise PlatformError(f"the MLflow registry at {uri} is unreachable ({exc})",
                                "start it with `dse up` or point DSE_MLFLOW_TRACKING_URI at a running server") from exc
        if probe.status_code == 401:
            who = f"as '{login[0]}'" if login else "without credentials"
            raise PlatformError(
                f"the MLflow server at {uri} refused the login {who} (HTTP 401)",
                "set DSE_MLFLOW_USERNAME and DSE_MLFLOW_PASSWORD to a user of that server; for the local one "
                f"they default to the admin in {credentials.mlflow_file(settings.home)}, made by `dse up`")
    return MlflowClient(uri)


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = connect(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)


def version_ref(client: MlflowClient, mv, found_by: str) -> ModelRef:
    return ModelRef(mv.name, str(mv.version), mv.run_id, (mv.tags or {}).get("feature_version"), found_by)


def alias_ref(settings: Settings, alias: str, client: MlflowClient | None = None) -> ModelRef | None:
    """The version ``alias`` names on the registered model; None when the alias (or the model) does not exist."""
    client = client or connect(settings)
    try:
        return version_ref(client, client.get_model_version_by_alias(settings.model_name, alias), "alias")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
    return None


def challenger_ref(settings: Settings, client: MlflowClient | None = None) -> ModelRef | None:
    """The version scored in shadow beside production: the challenger alias only (no legacy stage stands in)."""
    return alias_ref(settings, settings.challenger_alias, client)


def production_ref(settings: Settings, client: MlflowClient | None = None) -> ModelRef | None:
    """The version serving should use: the alias, else the newest legacy "Production" stage, else None."""
    client = client or connect(settings)
    found = alias_ref(settings, settings.model_alias, client)
    if found is not None:
        return found
    name = settings.model_name
    staged = [mv for mv in client.search_model_versions(f"name='{name}'") if mv.current_stage == "Production"]
    if not staged:
        return None
    return version_ref(client, max(staged, key=lambda mv: int(mv.version)), "stage")


def check_feature_version(ref: ModelRef) -> None:
    """Refuse a version trained on other features before anything is downloaded."""
    if ref.feature_version != features.FEATURE_VERSION:
        raise PlatformError(
            f"{ref.name} version {ref.version} was trained with feature version {ref.feature_version}, "
            f"this code computes version {features.FEATURE_VERSION}",
            "retrain (`dse train`) and promote a model of the current feature version")


def download(settings: Settings, ref: ModelRef, dst: Path) -> Path:
    """The version's MLflow model folder, copied under ``dst``: loading and the local cache both read it."""
    check_feature_version(ref)
    configure(settings)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{ref.name}/{ref.version}",
                                                    dst_path=str(dst), tracking_uri=settings.tracking_uri))


def load_local(path: Path, ref: ModelRef) -> Pipeline:
    """The pipeline in a local MLflow model folder, after checking it fits the feature module (no server needed)."""
    check_feature_version(ref)
    signature = Model.load(str(path)).signature
    inputs = signature.inputs.input_names() if signature else None
    if inputs != features.FEATURE_NAMES:
        raise PlatformError(
            f"{ref.name} version {ref.version} has input signature {inputs}, the feature module produces "
            f"{features.FEATURE_NAMES}", "retrain with `dse train` so the signature matches the features")
    return _load_skops(path, ref)


def _load_skops(path: Path, ref: ModelRef) -> Pipeline:
    """The sklearn flavour's skops file, loaded trusting skops' own defaults and `TRUSTED_TYPES` only; anything
    else, or a file that cannot be read, is refused (a `PlatformError`: the watcher rejects the version)."""
    fix = "retrain with `dse train` (it saves with skops) and move the alias to that version"
    try:
        flavor = dict(Model.load(str(path)).flavors.get("sklearn") or {})
    except Exception as exc:
        raise PlatformError(f"{ref.name} version {ref.version}: its MLmodel file cannot be read: {exc}", fix) from exc
    if flavor.get("serialization_format") != "skops":
        raise PlatformError(f"{ref.name} version {ref.version} is saved as "
                            f"{flavor.get('serialization_format') or 'no sklearn flavour'}, not skops: loading it "
                            "could run any code its author wrote", fix)
    file = (path / str(flavor.get("pickled_model", ""))).resolve()
    if not file.is_relative_to(path.resolve()) or not file.is_file():
        raise PlatformError(f"{ref.name} version {ref.version}: its skops file {flavor.get('pickled_model')!r} is "
                            "not a file inside the model folder", fix)
    try:
        found = set(skops.io.get_untrusted_types(file=file))
    except Exception as exc:
        raise PlatformError(f"{ref.name} version {ref.version}: its skops file cannot be read: "
                            f"{type(exc).__name__}: {exc}", fix) from exc
    if unknown := sorted(found - TRUSTED_TYPES):
        raise PlatformError(f"{ref.name} version {ref.version} contains types this platform does not trust: "
                            f"{', '.join(unknown)}", fix)
    try:
        return skops.io.load(file, trusted=sorted(found))
    except Exception as exc:
        raise PlatformError(f"{ref.name} version {ref.version}: its skops file cannot be loaded: "
                            f"{type(exc).__name__}: {exc}", fix) from exc


def load(settings: Settings, ref: ModelRef) -> Pipeline:
    """The version's scikit-learn pipeline, after checking it fits the feature module."""
    with tempfile.TemporaryDirectory(prefix="dse-model-") as tmp:
        return load_local(download(settings, ref, Path(tmp)), ref)


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
                     "recipe": (mv.tags or {}).get("recipe"),
                     **{f"{scope}_{m}": metrics.get(f"{prefix}{m}") for scope, prefix in (("folds", "cv_mean_"),
                                                                                           ("holdout", "holdout_"))
                        for m in ("roc_auc", "date_auc", "log_loss")},
                     f"gate_{settings.gate_metric}": evaluation.gate_score(
                         {k.removeprefix("last_fold_"): v for k, v in metrics.items()}, settings.gate_metric)
                     if f"last_fold_{settings.gate_metric.removeprefix('neg_')}" in metrics else None})
    return pd.DataFrame(rows).sort_values("version", ascending=False) if rows else pd.DataFrame()
