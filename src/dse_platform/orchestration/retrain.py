"""The nightly retrain's steps: fold streamed bars, validate the store, train, gate, report."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.rules import MIN_TRADING_INSTRUMENTS
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from dse_platform.model import gate, registry, training
from dse_platform.orchestration.airflow.rest import set_run_note
from dse_platform.serving import database


def fold_streamed_bars(settings: Settings, day: dt.date) -> dict[str, Any]:
    """Add the bars the stream stored up to ``day`` and the store lacks; the store is rewritten atomically.

    Idempotent: bars already in the store are left as they are, so a rerun for the
    same logical date adds nothing.
    """
    engine = database.engine(settings)
    database.migrate(engine)
    table = tables.bars
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
            database.record_event(database.engine(settings), "held", settings.model_name,
                                    version=None, previous_version=champion.version, source="nightly retrain",
                                    details={"reason": reason})
            return {"trained": False, "promoted": False, "reason": reason, "champion": champion.version}
    result = training.train(settings, cutoff=cutoff)
    decision = gate.promote(settings, result.version, source="nightly retrain")
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
