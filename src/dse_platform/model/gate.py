"""The champion/challenger gate: the decision to move the serving alias (`evaluate`), and acting on it (`apply`).

The two are apart so the nightly retrain can decide in one task and deploy in another; `apply`
moves the alias only if it still points where `evaluate` saw it, so a promotion made in the
MLflow UI in between is never overwritten. `promote` does both at once for `dse promote`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import mlflow
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.model import comparison, dataset, evaluation, features, recipes, scoring, training
from dse_platform.model.registry import ModelRef, connect, load, production_ref, version_ref
from dse_platform.serving import database

GATE_EXPERIMENT = "dse-direction-gate"
#: where `dse train` logs its walk-forward predictions (training.py)
OOS_ARTIFACT = "evaluation/oos_predictions.parquet"


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
    #: the paired comparisons behind the reason (differences, intervals, P(better), dates)
    figures: dict[str, float] = field(default_factory=dict)
    #: the policy the decision applied (comparison.GatePolicy as a dict)
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str:
        return "held" if not self.promoted else "forced" if self.forced else "promoted"


def policy(settings: Settings) -> comparison.GatePolicy:
    """The gate's declarative policy, from the DSE_GATE_* settings."""
    return comparison.GatePolicy(metric=settings.gate_metric, margin=settings.gate_margin,
                                 confidence=settings.gate_confidence,
                                 must_beat_baselines=settings.gate_must_beat_baselines,
                                 n_boot=settings.gate_n_boot, min_dates=settings.gate_min_dates)


def _challenger_rows(settings: Settings, run: Run, version: str) -> tuple[pd.DataFrame, dt.date, dt.date]:
    """The challenger's own out-of-sample rows of its last walk-forward window, as training logged them."""
    tags = run.data.tags
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=OOS_ARTIFACT,
                                                   tracking_uri=settings.tracking_uri)
    except (MlflowException, OSError) as exc:
        raise PlatformError(f"version {version} has no out-of-sample predictions ({OOS_ARTIFACT}) in run "
                            f"{run.info.run_id}", "promote only versions registered by `dse train`, or use --force"
                            ) from exc
    start, end = (dt.date.fromisoformat(tags[k]) for k in ("gate_window_start", "gate_window_end"))
    oos = pd.read_parquet(path)
    return oos[(oos["date"] >= start) & (oos["date"] <= end)].reset_index(drop=True), start, end


def _champion_probabilities(settings: Settings, client: MlflowClient, champion: ModelRef, run: Run,
                            rows: pd.DataFrame, start: dt.date, end: dt.date) -> tuple[pd.Series, str]:
    """The champion's out-of-sample probabilities on exactly ``rows``: its recipe refit at the challenger's cutoff.

    The champion's served model trained on most of the challenger's window, so scoring it there would
    hand it an in-sample advantage; its recipe refit on the same training rows the challenger saw is
    judged on the same footing. A champion logged without a recipe (before recipes existed) is scored
    as served, and the reason says so.
    """
    tags, params = run.data.tags, run.data.params
    # the challenger's own training data: its range, and its instruments when it was trained on a subset
    symbols = None if params.get("symbols", "all") == "all" else sorted(rows["symbol"].unique())
    data = dataset.build(settings.store_dir, start=dt.date.fromisoformat(tags["data_start"]),
                         end=dt.date.fromisoformat(tags["data_end"]), symbols=symbols)
    key = ["symbol", "date"]
    recipe = _recipe(client, champion)
    if recipe is None:
        window = data.frame[(data.frame["date"] >= start) & (data.frame["date"] <= end)]
        served = window[key].assign(p=scoring.probabilities(load(settings, champion), window[features.FEATURE_NAMES]))
        return rows[key].merge(served, on=key, how="left")["p"], "scored as served (it has no logged recipe)"
    sessions = np.unique(data.dates)
    purge = int(params.get("purge_sessions", settings.train_purge_sessions))
    fold = evaluation.Fold(0, sessions[np.searchsorted(sessions, start) - purge - 1], start, end)
    _, refit = training.fit_and_predict(data, fold, recipe)
    merged = rows[key].merge(refit[[*key, "probability"]], on=key, how="left")
    if merged["probability"].isna().any():
        raise PlatformError(f"the champion's refit misses {int(merged['probability'].isna().sum())} of the "
                            f"challenger's {len(rows)} rows in {start}..{end}",
                            "the store changed under the window since training: retrain the challenger")
    return merged["probability"], f"its recipe {recipe.name} refit at the challenger's cutoff"


def _recipe(client: MlflowClient, ref: ModelRef) -> recipes.Recipe | None:
    try:
        return recipes.from_logged(client.get_run(ref.run_id).data.params)
    except PlatformError:
        return None


def evaluate_gate(settings: Settings, client: MlflowClient, challenger: ModelRef,
                  champion: ModelRef | None) -> Decision:
    """The challenger against the champion and the strongest baseline, paired on the same out-of-sample rows.

    Rows: the challenger's last walk-forward window (its model trained before it). The champion's
    probabilities there come from its recipe refit at the same cutoff (`_champion_probabilities`),
    the baselines' from the same training rows. `comparison.decide` applies the policy: per-date
    metric means, a bootstrap over dates, the lower bound above the margin (champion) and above 0
    (the strongest baseline).

    A challenger of the champion's own recipe refit at the same cutoff is the challenger itself, so the
    two are indistinguishable and it is held: newer data alone is no evidence. It becomes the shadow
    challenger, and its live outcomes beside production's are what a person can promote it on.
    """
    rule = policy(settings)
    run = client.get_run(challenger.run_id)
    if "gate_window_start" not in run.data.tags:
        raise PlatformError(f"version {challenger.version} has no walk-forward results in run {challenger.run_id}",
                            "promote only versions registered by `dse train`, or use --force")
    rows, start, end = _challenger_rows(settings, run, challenger.version)
    frame = rows.rename(columns={"probability": "p_challenger"})
    how = ""
    if champion is not None:
        if _recipe(client, champion) == recipes.from_logged(run.data.params):
            frame["p_champion"] = frame["p_challenger"]
            how = "the same recipe: refit at the challenger's cutoff it is the challenger itself"
        else:
            frame["p_champion"], how = _champion_probabilities(settings, client, champion, run, rows, start, end)
    compared = comparison.compare(rule, frame, evaluation.BASELINES)
    verdict = comparison.decide(rule, compared)
    promoted, reason = verdict.promote, verdict.reason
    if challenger.feature_version != features.FEATURE_VERSION:
        promoted, reason = False, f"feature version {challenger.feature_version} is not the current one"
    elif how:
        reason = f"{reason} (champion version {champion.version}: {how})"
    theirs = compared.champion.other if compared.champion is not None else None
    ours = next(iter(compared.baselines.values())).challenger if compared.baselines else float("nan")
    return Decision(promoted, challenger.version, champion.version if champion else None, rule.metric, ours, theirs,
                    {b: c.other for b, c in compared.baselines.items()}, f"{start}..{end}", reason,
                    figures=verdict.figures, policy=rule.model_dump())


def _record(settings: Settings, decision: Decision, source: str) -> None:
    """The decision as an MLflow run of the gate experiment and as a `model_events` row."""
    event = decision.event
    mlflow.set_experiment(GATE_EXPERIMENT)
    with mlflow.start_run(run_name=f"{event}-v{decision.challenger}"):
        mlflow.set_tags({"decision": event, "challenger": decision.challenger, "source": source,
                         "champion": decision.champion or "none", "reason": decision.reason[:500]})
        mlflow.log_params({"metric": decision.metric, "window": decision.window,
                           **{f"policy_{k}": v for k, v in decision.policy.items()}})
        mlflow.log_metrics({"challenger_score": decision.challenger_score,
                            **({"champion_score": decision.champion_score} if decision.champion_score is not None
                               else {}),
                            **{f"baseline_{k}_score": v for k, v in decision.baseline_scores.items()},
                            **{k: v for k, v in decision.figures.items() if np.isfinite(v)}})
        mlflow.log_dict(asdict(decision), "decision.json")
    engine = database.engine(settings)
    database.migrate(engine)
    database.record_event(engine, event, settings.model_name, version=decision.challenger,
                          previous_version=decision.champion, source=source,
                          details=json.loads(json.dumps(asdict(decision), default=str)))


def alias_version(settings: Settings, client: MlflowClient, alias: str | None = None) -> str | None:
    """The version ``alias`` (default: the serving alias) points at now (None when it is not set)."""
    try:
        return str(client.get_model_version_by_alias(settings.model_name, alias or settings.model_alias).version)
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
    if decision.promoted and settings.challenger_alias and \
            alias_version(settings, client, settings.challenger_alias) == decision.challenger:
        # the shadow would score production's own model twice
        client.delete_registered_model_alias(settings.model_name, settings.challenger_alias)
    _record(settings, decision, source)
    return decision


def nominate(settings: Settings, version: str) -> bool:
    """Point the challenger alias at ``version`` so the stream scores it in shadow; False when shadowing is off.

    For a version the gate held: its live outcomes beside production's are the evidence the next
    decision (and a person in the MLflow UI) can weigh.
    """
    if not settings.challenger_alias:
        return False
    connect(settings).set_registered_model_alias(settings.model_name, settings.challenger_alias, version)
    return True


def promote(settings: Settings, version: str | None = None, force: bool = False,
            source: str = "dse promote") -> Decision:
    """Run the gate for ``version`` (default: the newest) and move the alias only if it passes.

    ``force`` moves the alias without the gate (for people; recorded as ``forced``).
    """
    return apply(settings, evaluate(settings, version, force), source)
