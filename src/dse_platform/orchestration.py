"""What the Airflow DAGs do, as plain functions: the DAG files only wire these together.

Kept free of Airflow imports so each step runs (and is tested) without a scheduler;
`airflow_ext` holds the few Airflow-specific pieces.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
import pandas as pd
from sqlalchemy import select

from dse_platform import jars, registry, serving_db, store, training
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.quality import MIN_TRADING_INSTRUMENTS
from dse_platform.trading_calendar import TradingCalendar

log = logging.getLogger("dse.orchestration")

STREAM_TRIGGERS = ("available-now", "processing-time")


# ---- nightly retrain ---------------------------------------------------------------------------

def fold_streamed_bars(settings: Settings, day: dt.date) -> dict[str, Any]:
    """Add the bars the stream stored up to ``day`` and the store lacks; the store is rewritten atomically.

    Idempotent: bars already in the store are left as they are, so a rerun for the
    same logical date adds nothing.
    """
    engine = serving_db.engine(settings)
    serving_db.create_schema(engine)
    table = serving_db.bars
    with engine.connect() as conn:
        streamed = pd.DataFrame(conn.execute(select(table).where(table.c.date <= day)).mappings().all())
    if streamed.empty:
        return {"added": 0, "sessions_added": 0}
    current = store.read_bars(settings.store_dir)
    known = pd.MultiIndex.from_frame(current[["symbol", "date"]])
    new = streamed[~pd.MultiIndex.from_frame(streamed[["symbol", "date"]]).isin(known)]
    if new.empty:
        return {"added": 0, "sessions_added": 0}
    new = new.assign(trades=new["trades"].astype("Int64"), sector=None, category=None, quality_flags="",
                     source_file="stream:" + new["source"].astype(str))[list(current.columns)]
    calendar = store.read_calendar(settings.store_dir)
    per_day = new.groupby("date")["symbol"].nunique()
    sessions = sorted(set(calendar.sessions) | {d for d, n in per_day.items() if n >= MIN_TRADING_INSTRUMENTS})
    added_sessions = len(sessions) - len(calendar.sessions)
    coverage = calendar.coverage if not added_sessions else (
        *calendar.coverage, (min(per_day.index), max(per_day.index)))
    extra = {name: (settings.store_dir / name).read_bytes()
             for name in ("rejects.csv", "quality_report.json", "quality_by_symbol.csv")
             if (settings.store_dir / name).exists()}
    store.write_store(settings.store_dir, pd.concat([current, new], ignore_index=True),
                      TradingCalendar(tuple(sessions), tuple(coverage)), extra)
    return {"added": len(new), "sessions_added": added_sessions}


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


def retrain(settings: Settings, cutoff: dt.date) -> dict[str, Any]:
    """Train on data up to ``cutoff`` and run the gate; hold (without training) when nothing is new."""
    client = registry.connect(settings)
    champion = registry.production_ref(settings, client)
    data_end = store.read_bars(settings.store_dir, end=cutoff, columns=["date"])["date"].max()
    if champion is not None:
        trained_to = client.get_run(champion.run_id).data.tags.get("data_end")
        last_labelled = store.read_calendar(settings.store_dir).previous_session(data_end)
        if trained_to and dt.date.fromisoformat(trained_to) >= last_labelled:
            reason = (f"no new data: version {champion.version} already trained on bars to {trained_to}, "
                      f"the store ends {data_end}")
            serving_db.record_event(serving_db.engine(settings), "held", settings.model_name,
                                    version=None, previous_version=champion.version, source="nightly retrain",
                                    details={"reason": reason})
            return {"trained": False, "promoted": False, "reason": reason, "champion": champion.version}
    result = training.train(settings, cutoff=cutoff)
    decision = registry.promote(settings, result.version, source="nightly retrain")
    return {"trained": True, "run_id": result.run_id, "version": result.version, "promoted": decision.promoted,
            "reason": decision.reason, "champion": decision.champion, "metric": decision.metric,
            "challenger_score": decision.challenger_score, "champion_score": decision.champion_score,
            "metrics": {k: v for k, v in result.metrics.items() if k.startswith("oos_")}}


def report_text(logical_date: dt.date, fold: dict, check: dict, outcome: dict) -> str:
    """The nightly run's short report (Markdown): what was trained, the scores, the decision."""
    lines = [f"# Nightly retrain {logical_date}", "",
             f"- store: {check['bars']:,} bars, {check['instruments']} instruments, last {check['last_date']} "
             f"({fold['added']:,} streamed bars folded in)"]
    if outcome["trained"]:
        lines.append(f"- trained version {outcome['version']} (run {outcome['run_id']})")
        lines += [f"  - {k.removeprefix('oos_')}: {v:.4f}" for k, v in sorted(outcome["metrics"].items())
                  if "baseline" not in k]
    verdict = "PROMOTED" if outcome["promoted"] else "HELD"
    lines.append(f"- decision: {verdict}: {outcome['reason']}")
    return "\n".join(lines)


def publish_report(settings: Settings, text: str, outcome: dict, dag_id: str, run_id: str) -> None:
    """The report as an MLflow artifact of the training run and as the DAG run's note."""
    if outcome.get("run_id"):
        registry.connect(settings).log_text(outcome["run_id"], text, "reports/nightly_report.md")
    set_run_note(settings, dag_id, run_id, text)


def set_run_note(settings: Settings, dag_id: str, run_id: str, text: str) -> None:
    """PATCH the DAG run's note through Airflow's REST API (the UI shows it on the run)."""
    from dse_platform.airflow_env import admin_password

    base = settings.airflow_url
    try:
        token = httpx.post(f"{base}/auth/token", json={"username": "admin",
                                                        "password": admin_password(settings) or ""},
                           timeout=10).raise_for_status().json()["access_token"]
        httpx.patch(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"note": text[:1000]},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("run note not set (%s): the report is in the task log and MLflow", exc)


# ---- streaming ---------------------------------------------------------------------------------

def check_stream_params(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the streaming DAG's trigger params beyond their JSON schema; normalised params."""
    try:
        start = dt.date.fromisoformat(str(params["start"]))
        end = dt.date.fromisoformat(str(params["end"]))
    except ValueError as exc:
        raise PlatformError(f"start/end must be YYYY-MM-DD dates: {exc}", "fix the dates in the trigger form") from exc
    if start > end:
        raise PlatformError(f"start {start} is after end {end}", "swap the dates in the trigger form")
    speed = float(params["speed"])
    if speed < 0:
        raise PlatformError(f"speed {speed} is negative", "use trading days per second, or 0 for as fast as possible")
    if params["trigger"] not in STREAM_TRIGGERS:
        raise PlatformError(f"trigger {params['trigger']!r} is unknown", f"use one of {STREAM_TRIGGERS}")
    limit = int(params.get("run_time_limit_s") or 0)
    if params["trigger"] == "processing-time" and limit <= 0:
        raise PlatformError("a processing-time run needs a run time limit to end by itself",
                            "set run_time_limit_s (seconds) or use the available-now trigger")
    symbols = [s.strip().upper() for s in params.get("symbols") or [] if s.strip()]
    if symbols:
        known = set(store.read_bars(settings.store_dir, start=start, end=end, columns=["symbol", "date"])["symbol"])
        unknown = sorted(set(symbols) - known)
        if unknown:
            raise PlatformError(f"unknown symbol(s) {', '.join(unknown)}: no bars between {start} and {end}",
                                "use DSE trading codes present in the store (see quality_by_symbol.csv)")
    return {"start": str(start), "end": str(end), "symbols": symbols, "speed": speed, "trigger": params["trigger"],
            "run_time_limit_s": limit}


def spark_preflight(settings: Settings) -> dict[str, str]:
    """The connector jars for spark-submit; one clear error when they (or the connection) are missing."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection("spark_default")
    except Exception as exc:  # Airflow raises AirflowNotFoundException (or a task-SDK error) for a missing id
        raise PlatformError(f"the Airflow connection 'spark_default' is missing ({exc})",
                            "set AIRFLOW_CONN_SPARK_DEFAULT (dse up does) or add it in Admin > Connections") from exc
    return {"jars": jars.jar_list(settings, "spark"), "master": conn.host or settings.spark_master}


def predictions_since(settings: Settings, since: dt.datetime) -> int:
    """Predictions scored at or after ``since`` (the streaming DAG's health check)."""
    engine = serving_db.engine(settings)
    serving_db.create_schema(engine)
    table = serving_db.predictions
    with engine.connect() as conn:
        from sqlalchemy import func

        return int(conn.execute(select(func.count()).select_from(table).where(table.c.scored_at >= since))
                   .scalar_one())


def stream_env(settings: Settings) -> dict[str, str]:
    """DSE_* settings the submitted job needs to see the same platform as the DAG."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k.startswith("DSE_")}
    env["PYSPARK_PYTHON"] = sys.executable
    env["DSE_HOME"] = str(settings.home)
    return env


