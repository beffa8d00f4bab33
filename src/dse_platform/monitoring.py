"""Daily monitoring: feature drift, live accuracy per model version, dead letters; alerts past thresholds.

Drift is the population stability index (PSI) of each feature in the last
streamed session against the same feature over the reference sessions of the
store (the data models train on), with decile bins of the reference. Live
accuracy is read from `prediction_outcomes`, beside the two baselines scored on
the same rows. Every crossed threshold becomes an ``alert`` row in
`model_events` and a log line; the caller (the DAG) fails the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import select

from dse_platform import features, serving_db, store
from dse_platform.config import Settings

log = logging.getLogger("dse.monitoring")


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (reference deciles as bins)."""
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.all(current == edges[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass
class Report:
    session: dt.date | None
    drift: dict[str, float] = field(default_factory=dict)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    dead_letters: dict[str, int] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"session": str(self.session), "drift": self.drift, "dead_letters": self.dead_letters,
                "alerts": self.alerts, "accuracy": self.accuracy.to_dict(orient="records")}


def feature_drift(settings: Settings, engine, session: dt.date) -> dict[str, float]:
    """PSI per feature: the stream's features of ``session`` vs the store's last reference sessions."""
    table = serving_db.features
    with engine.connect() as conn:
        rows = conn.execute(select(table.c["values"]).where(table.c.date == session,
                                                            table.c.feature_version == features.FEATURE_VERSION)
                            ).scalars().all()
    if not rows:
        return {}
    current = np.array([json.loads(v) for v in rows], dtype=float)
    calendar = store.read_calendar(settings.store_dir)
    sessions = [d for d in calendar.sessions if d < session][-settings.monitor_reference_sessions:]
    bars = store.read_bars(settings.store_dir, start=calendar.sessions[0] if not sessions else
                           sessions[0] - dt.timedelta(days=120), end=sessions[-1] if sessions else session)
    bars = features.drop_synthetic(bars).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    ref = features.compute(bars)
    ref = ref[ref["valid"].to_numpy() & (bars["date"] >= (sessions[0] if sessions else session)).to_numpy()]
    return {name: psi(ref[name].to_numpy(float), current[:, i]) for i, name in enumerate(features.FEATURE_NAMES)}


def live_accuracy(engine, since: dt.date) -> pd.DataFrame:
    """Accuracy per model version on resolved outcomes since ``since``, beside always-up and yesterday's sign."""
    outcomes = serving_db.read_frame(engine, "prediction_outcomes")
    if outcomes.empty:
        return pd.DataFrame()
    outcomes = outcomes[outcomes["date"] >= since]
    bars = serving_db.read_frame(engine, "bars")[["symbol", "date", "close"]].sort_values(["symbol", "date"])
    bars["up_today"] = bars.groupby("symbol")["close"].diff() > 0
    merged = outcomes.merge(bars[["symbol", "date", "up_today"]], on=["symbol", "date"], how="left")
    rows = []
    for version, part in merged.groupby("model_version"):
        rows.append({"model_version": version, "outcomes": len(part), "accuracy": float(part["correct"].mean()),
                     "baseline_always_up": float((part["actual"] == 1).mean()),
                     "baseline_yesterday_sign": float((part["actual"] == part["up_today"].astype(int)).mean())})
    return pd.DataFrame(rows)


def dead_letter_counts(engine, since: dt.datetime) -> dict[str, int]:
    table = serving_db.dead_letters
    with engine.connect() as conn:
        reasons = conn.execute(select(table.c.reason).where(table.c.received_at >= since)).scalars().all()
    return pd.Series(reasons, dtype=object).value_counts().to_dict() if reasons else {}


def run(settings: Settings, session: dt.date | None = None) -> Report:
    """Compute the day's report, record an alert per crossed threshold, and return it."""
    engine = serving_db.engine(settings)
    serving_db.create_schema(engine)
    with engine.connect() as conn:
        last = conn.execute(select(serving_db.features.c.date).order_by(serving_db.features.c.date.desc())
                            .limit(1)).scalar_one_or_none()
    session = session or last
    report = Report(session)
    if session is None:
        report.alerts.append("no streamed features yet: is the streaming job running?")
    else:
        report.drift = feature_drift(settings, engine, session)
        report.accuracy = live_accuracy(engine, session - dt.timedelta(days=settings.monitor_accuracy_days))
    report.dead_letters = dead_letter_counts(engine, serving_db.utcnow() - dt.timedelta(days=1))
    for name, value in report.drift.items():
        if value > settings.monitor_psi_threshold:
            report.alerts.append(f"feature drift: PSI of {name} is {value:.3f} > {settings.monitor_psi_threshold}")
    for row in report.accuracy.itertuples():
        best = max(row.baseline_always_up, row.baseline_yesterday_sign)
        if row.outcomes >= settings.monitor_min_outcomes and row.accuracy + settings.monitor_accuracy_slack < best:
            report.alerts.append(f"live accuracy of version {row.model_version} is {row.accuracy:.3f}, "
                                 f"below the best baseline {best:.3f} (over {row.outcomes} outcomes)")
    total_dead = sum(report.dead_letters.values())
    if total_dead > settings.monitor_max_dead_letters:
        report.alerts.append(f"{total_dead} dead letters in the last day > {settings.monitor_max_dead_letters}")
    for alert in report.alerts:
        log.error("ALERT: %s", alert)
        serving_db.record_event(engine, "alert", settings.model_name, source="monitoring",
                                details={"alert": alert, "session": str(session)})
    return report
