"""The champion/challenger gate: the decision to move the serving alias (`evaluate`), and acting on it (`apply`).

The two are apart so the nightly retrain can decide in one task and deploy in another; `apply`
moves the alias only if it still points where `evaluate` saw it, so a promotion made in the
MLflow UI in between is never overwritten. `promote` does both at once for `dse promote`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, replace

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import mlflow
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.model import dataset, evaluation, features, scoring
from dse_platform.model.registry import ModelRef, connect, load, production_ref, version_ref
from dse_platform.serving import database

GATE_EXPERIMENT = "dse-direction-gate"


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
    #: the version the alias pointed at when the decision was made (None: no alias)
    alias_version: str | None = None
    forced: bool = False

    @property
    def event(self) -> str:
        return "held" if not self.promoted else "forced" if self.forced else "promoted"


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
        p = scoring.probabilities(model, rows[features.FEATURE_NAMES])
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


def _record(settings: Settings, decision: Decision, source: str) -> None:
    """The decision as an MLflow run of the gate experiment and as a `model_events` row."""
    event = decision.event
    mlflow.set_experiment(GATE_EXPERIMENT)
    with mlflow.start_run(run_name=f"{event}-v{decision.challenger}"):
        mlflow.set_tags({"decision": event, "challenger": decision.challenger, "source": source,
                         "champion": decision.champion or "none", "reason": decision.reason[:500]})
        mlflow.log_params({"metric": decision.metric, "window": decision.window, "margin": settings.gate_margin})
        mlflow.log_metrics({"challenger_score": decision.challenger_score,
                            **({"champion_score": decision.champion_score} if decision.champion_score is not None
                               else {}),
                            **{f"baseline_{k}_score": v for k, v in decision.baseline_scores.items()}})
        mlflow.log_dict(asdict(decision), "decision.json")
    engine = database.engine(settings)
    database.migrate(engine)
    database.record_event(engine, event, settings.model_name, version=decision.challenger,
                          previous_version=decision.champion, source=source,
                          details=json.loads(json.dumps(asdict(decision), default=str)))


def alias_version(settings: Settings, client: MlflowClient) -> str | None:
    """The version the serving alias points at now (None when it is not set)."""
    try:
        return str(client.get_model_version_by_alias(settings.model_name, settings.model_alias).version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        return None


def evaluate(settings: Settings, version: str | None = None, force: bool = False) -> Decision:
    """The gate's decision for ``version`` (default: the newest), without moving anything.

    ``force`` skips the gate (for people; recorded as ``forced``).
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
    challenger = version_ref(client, max(chosen, key=lambda mv: int(mv.version)), "request")
    champion = production_ref(settings, client)
    if champion is not None and champion.version == challenger.version and champion.found_by == "alias":
        raise PlatformError(f"version {challenger.version} is already {settings.model_alias}",
                            "train a new version first, or name another with --version")
    seen = champion.version if champion is not None and champion.found_by == "alias" else None
    if force:
        return Decision(True, challenger.version, champion.version if champion else None, settings.gate_metric,
                        float("nan"), None, {}, "", "forced by a person, gate skipped", seen, forced=True)
    return replace(evaluate_gate(settings, client, challenger, champion), alias_version=seen)


def apply(settings: Settings, decision: Decision, source: str) -> Decision:
    """Act on ``decision``: move the alias if it promotes and the alias is still where it was seen; record it.

    If someone moved the alias since the decision, nothing moves and the record says ``held``.
    A decision whose move already happened (a retried deploy) is recorded as made, not moved again.
    """
    client = connect(settings)
    now = alias_version(settings, client)
    if decision.promoted and now not in (decision.alias_version, decision.challenger):
        decision = replace(decision, promoted=False, reason=(
            f"alias moved by someone else since validation: it pointed at version {decision.alias_version}, "
            f"now at {now}"))
    if decision.promoted and now != decision.challenger:
        client.set_registered_model_alias(settings.model_name, settings.model_alias, decision.challenger)
    _record(settings, decision, source)
    return decision


def promote(settings: Settings, version: str | None = None, force: bool = False,
            source: str = "dse promote") -> Decision:
    """Run the gate for ``version`` (default: the newest) and move the alias only if it passes.

    ``force`` moves the alias without the gate (for people; recorded as ``forced``).
    """
    return apply(settings, evaluate(settings, version, force), source)
