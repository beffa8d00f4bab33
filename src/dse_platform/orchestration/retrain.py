"""The nightly retrain's steps: validate the store, train, validate (the gate's decision), deploy, report.

Each is its own Airflow task and idempotent per logical date: `train` tags its MLflow run and
model version with ``logical_date`` and the DAG run id and, on a retry, reuses the version it
registered for that date; `validate` decides without moving anything and notes where the alias
pointed; `deploy` moves the alias only if it still points there, and records the decision once
per logical date. Folding streamed bars is in `orchestration.fold`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from mlflow.tracking import MlflowClient
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.errors import PlatformError
from dse_platform.model import gate, registry, training
from dse_platform.orchestration.airflow.rest import set_run_note
from dse_platform.serving import database


def validate_store(settings: Settings) -> dict[str, Any]:
    """The store is readable, keyed uniquely, and every bar is sane; a summary for the report."""
    bars = store.read_bars(settings.store_dir, columns=["symbol", "date", "open", "high", "low", "close"])
    dupes = int(bars.duplicated(["symbol", "date"]).sum())
    bad = int(((bars[["open", "high", "low", "close"]] <= 0).any(axis=1) | (bars["high"] < bars["low"])).sum())
    if dupes or bad:
        raise PlatformError(f"the store at {settings.store_dir} has {dupes} duplicate (symbol, date) keys and "
                            f"{bad} impossible bars", "rebuild it with `dse ingest` and fold the stream again")
    return {"bars": len(bars), "instruments": int(bars["symbol"].nunique()),
            "last_date": str(bars["date"].max())}


def source(logical_date: dt.date) -> str:
    """The `model_events` source of one night's decisions: one decision per logical date."""
    return f"{tables.NIGHTLY_SOURCE_PREFIX}{logical_date}"


@contextmanager
def _run_tags(tags: dict[str, str]) -> Iterator[None]:
    """Tags MLflow puts on every run started meanwhile (MLFLOW_RUN_CONTEXT): set at creation, before registering."""
    before = os.environ.get("MLFLOW_RUN_CONTEXT")
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps(tags)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_RUN_CONTEXT", None)
        else:
            os.environ["MLFLOW_RUN_CONTEXT"] = before


def _registered_for(settings: Settings, client: MlflowClient, logical_date: dt.date):
    """The version a previous try registered for ``logical_date`` (its training run carries the tag), or None."""
    experiment = client.get_experiment_by_name(training.EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], f"tags.logical_date = '{logical_date}'")
    for run in runs:
        found = [mv for mv in client.search_model_versions(f"run_id = '{run.info.run_id}'")
                 if mv.name == settings.model_name]
        if found:
            return found[0]
    return None


#: the training figures the nightly report shows: walk-forward fold means and the holdout, model only
REPORTED = frozenset(f"{scope}{m}" for scope in ("cv_mean_", "holdout_")
                     for m in ("roc_auc", "moved_roc_auc", "date_auc", "date_ic", "log_loss"))


def _trained(version: str, run_id: str, client: MlflowClient, reused: bool) -> dict[str, Any]:
    metrics = client.get_run(run_id).data.metrics
    return {"trained": True, "reused": reused, "version": version, "run_id": run_id,
            "metrics": {k: v for k, v in metrics.items() if k in REPORTED}}


def train(settings: Settings, logical_date: dt.date, dag_run_id: str) -> dict[str, Any]:
    """Train on data up to ``logical_date`` and register one version for it; hold without training when nothing is new.

    A retry finds the version an earlier try registered for the same logical date and reuses it.
    """
    client = registry.connect(settings)
    earlier = _registered_for(settings, client, logical_date)
    if earlier is not None:
        return _trained(str(earlier.version), earlier.run_id, client, reused=True)
    champion = registry.production_ref(settings, client)
    data_end = store.read_bars(settings.store_dir, end=logical_date, columns=["date"])["date"].max()
    if champion is not None:
        trained_to = client.get_run(champion.run_id).data.tags.get("data_end")
        last_labelled = store.read_calendar(settings.store_dir).previous_session(data_end)
        if trained_to and dt.date.fromisoformat(trained_to) >= last_labelled:
            return {"trained": False, "champion": champion.version,
                    "reason": f"no new data: version {champion.version} already trained on bars to {trained_to}, "
                              f"the store ends {data_end}"}
    tags = {"logical_date": str(logical_date), "dag_run_id": dag_run_id}
    with _run_tags(tags):
        result = training.train(settings, cutoff=logical_date)
    if result.version is None:
        raise PlatformError(f"training run {result.run_id} registered no version", "check the MLflow server's log")
    registry.tag_version(settings, result.version, tags)
    return _trained(result.version, result.run_id, client, reused=False)


def validate(settings: Settings, trained: dict[str, Any]) -> dict[str, Any] | None:
    """The gate's decision on the trained version (nothing moves); None when nothing was trained.

    A version that is already the alias's (a rerun after a deploy) is decided as promoted again,
    so deploy has nothing to move and records nothing new.
    """
    if not trained["trained"]:
        return None
    try:
        return asdict(gate.evaluate(settings, trained["version"]))
    except PlatformError:
        if gate.alias_version(settings, registry.connect(settings)) != trained["version"]:
            raise
        return None


def _recorded(settings: Settings, logical_date: dt.date) -> dict[str, Any] | None:
    """The decision already recorded for ``logical_date`` (a retried or rerun deploy), if any."""
    engine = database.engine(settings)
    database.migrate(engine)
    events = tables.model_events
    with engine.connect() as conn:
        row = conn.execute(select(events.c.event, events.c.details)
                           .where(events.c.source == source(logical_date), events.c.model_name == settings.model_name,
                                  events.c.event.in_(("promoted", "held", "forced")))
                           .order_by(events.c.id.desc()).limit(1)).first()
    return None if row is None else {"event": row.event, **json.loads(row.details)}


def deploy(settings: Settings, logical_date: dt.date, trained: dict[str, Any],
           decision: dict[str, Any] | None, dry_run: bool = False) -> dict[str, Any]:
    """Act on the decision (the alias moves only if nobody moved it since `validate`); recorded once per date.

    ``dry_run`` says what the gate decided and changes nothing: no alias moves, nothing is recorded.
    """
    if dry_run:
        if decision is None:
            return {"promoted": False, "reason": f"dry run: {trained.get('reason', 'nothing to decide')}",
                    "dry_run": True}
        would = "would promote" if decision["promoted"] else "would hold"
        return {"promoted": False, "reason": f"dry run, {would}: {decision['reason']}", "dry_run": True}
    recorded = _recorded(settings, logical_date)
    if recorded is not None:
        return {"promoted": recorded["event"] != "held", "reason": recorded["reason"], "already_recorded": True}
    if not trained["trained"]:
        database.record_event(database.engine(settings), "held", settings.model_name, version=None,
                              previous_version=trained["champion"], source=source(logical_date),
                              details={"reason": trained["reason"]})
        return {"promoted": False, "reason": trained["reason"]}
    if decision is None:
        return {"promoted": True, "reason": f"version {trained['version']} is already {settings.model_alias}"}
    applied = gate.apply(settings, gate.Decision(**decision), source(logical_date))
    shadowed = not applied.promoted and applied.challenger != applied.alias_version and \
        gate.nominate(settings, applied.challenger)
    return {"promoted": applied.promoted, "reason": applied.reason, "champion": applied.champion,
            "metric": applied.metric, "challenger_score": applied.challenger_score,
            "champion_score": applied.champion_score, "shadowed": shadowed}


def report_text(logical_date: dt.date, fold: dict, check: dict, trained: dict, deployed: dict) -> str:
    """The nightly run's short report (Markdown): what was folded and trained, the scores, the decision."""
    lines = [f"# Nightly retrain {logical_date}", "",
             f"- store: {check['bars']:,} bars, {check['instruments']} instruments, last {check['last_date']} "
             f"({fold['added']:,} streamed bars folded in, {fold.get('replaced', 0):,} replaced, "
             f"{fold.get('rejected', 0):,} rejected)"]
    if trained["trained"]:
        how = "reused the version an earlier try registered" if trained.get("reused") else "trained"
        lines.append(f"- {how}: version {trained['version']} (run {trained['run_id']})")
        lines += [f"  - {k}: {v:.4f}" for k, v in sorted(trained["metrics"].items())]
    verdict = "PROMOTED" if deployed["promoted"] else "HELD"
    lines.append(f"- decision: {verdict}: {deployed['reason']}")
    return "\n".join(lines)


def publish_report(settings: Settings, text: str, trained: dict, dag_id: str, run_id: str) -> None:
    """The report as an MLflow artifact of the training run and as the DAG run's note."""
    if trained.get("run_id"):
        registry.connect(settings).log_text(trained["run_id"], text, "reports/nightly_report.md")
    set_run_note(settings, dag_id, run_id, text)
