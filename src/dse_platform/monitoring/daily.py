"""Daily monitoring: feature drift, live accuracy per model version, dead letters; alerts past thresholds.

Drift is the population stability index (PSI) of each drift-monitored feature
(`features.DRIFT_FEATURES`) in the last streamed session against the same feature
over the reference sessions of the store (the data models train on), with decile
bins of the reference. Live accuracy is read from `prediction_outcomes`, beside
the two baselines scored on the same rows. Every crossed threshold becomes an
``alert`` row in `model_events` and a log line; the caller (the DAG) fails the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.monitoring.accuracy import live_accuracy
from dse_platform.monitoring.drift import feature_drift
from dse_platform.serving import database

log = logging.getLogger("dse.monitoring")


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


def dead_letter_counts(engine, since: dt.datetime) -> dict[str, int]:
    table = tables.dead_letters
    with engine.connect() as conn:
        reasons = conn.execute(select(table.c.reason).where(table.c.received_at >= since)).scalars().all()
    return pd.Series(reasons, dtype=object).value_counts().to_dict() if reasons else {}


def run(settings: Settings, session: dt.date | None = None) -> Report:
    """Compute the day's report, record an alert per crossed threshold, and return it."""
    engine = database.engine(settings)
    database.migrate(engine)
    with engine.connect() as conn:
        last = conn.execute(select(tables.features.c.date).order_by(tables.features.c.date.desc())
                            .limit(1)).scalar_one_or_none()
    session = session or last
    report = Report(session)
    if session is None:
        report.alerts.append("no streamed features yet: is the streaming job running?")
    else:
        report.drift = feature_drift(settings, engine, session)
        report.accuracy = live_accuracy(engine, session - dt.timedelta(days=settings.monitor_accuracy_days))
    report.dead_letters = dead_letter_counts(engine, tables.utcnow() - dt.timedelta(days=1))
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
        database.record_event(engine, "alert", settings.model_name, source="monitoring",
                                details={"alert": alert, "session": str(session)})
    return report
