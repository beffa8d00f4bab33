"""Daily monitoring of one trading session: feature drift, live accuracy per role and version, dead letters.

The run is for a day (Asia/Dhaka; the DAG passes its logical date there) and covers the last
trading session on or before it, so a rerun for the same day reads the same rows and gives
the same report. Drift is the population stability index (PSI) of each drift-monitored
feature over the last DSE_MONITOR_DRIFT_SESSIONS sessions against the reference sessions
before them (`drift.feature_drift`). Live accuracy covers outcomes of bars dated in the
DSE_MONITOR_ACCURACY_DAYS up to the session, beside the strongest baseline, for the production
model and the challenger scored in shadow; only production's (what was served) can alert, the
challenger's is reported and logged for the promotion decision. Dead letters are
those received on the session's day in Asia/Dhaka. Every crossed threshold becomes one
``alert`` row in `model_events` per (session, kind), however often the day is rerun; the
caller (the DAG) fails the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import DHAKA
from dse_platform.monitoring.accuracy import live_accuracy, strongest_baseline
from dse_platform.monitoring.drift import feature_drift
from dse_platform.serving import database

log = logging.getLogger("dse.monitoring")
SOURCE = "monitoring"


@dataclass
class Report:
    session: dt.date
    drift: dict[str, float] = field(default_factory=dict)
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    dead_letters: dict[str, int] = field(default_factory=dict)
    #: (kind, message): kind names what crossed (e.g. ``drift:ret_20``), one alert per session and kind
    alerts: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"session": str(self.session), "drift": self.drift, "dead_letters": self.dead_letters,
                "alerts": [message for _, message in self.alerts],
                "accuracy": self.accuracy.to_dict(orient="records")}


def session_for(settings: Settings, day: dt.date) -> dt.date:
    """The last trading session on or before ``day`` (the store's learned calendar)."""
    calendar = store.read_calendar(settings.store_dir)
    return day if calendar.is_session(day) else calendar.previous_session(day)


def dead_letter_counts(engine, day: dt.date) -> dict[str, int]:
    """Dead letters received on ``day`` in Asia/Dhaka, per reason."""
    start = dt.datetime.combine(day, dt.time(), DHAKA).astimezone(dt.UTC)
    table = tables.dead_letters
    with engine.connect() as conn:
        reasons = conn.execute(select(table.c.reason).where(table.c.received_at >= start,
                                                            table.c.received_at < start + dt.timedelta(days=1))
                               ).scalars().all()
    return {str(k): int(v) for k, v in pd.Series(reasons, dtype=object).value_counts().items()} if reasons else {}


def _alerts(settings: Settings, report: Report) -> list[tuple[str, str]]:
    alerts = [(f"drift:{name}", f"feature drift: PSI of {name} over the {settings.monitor_drift_sessions} "
                                f"sessions to {report.session} is {value:.3f} > {settings.monitor_psi_threshold}")
              for name, value in report.drift.items() if value > settings.monitor_psi_threshold]
    if not report.drift:
        alerts.append(("drift:none", f"no streamed features in the {settings.monitor_drift_sessions} sessions to "
                                     f"{report.session}: is the streaming job running?"))
    for row in report.accuracy.to_dict(orient="records"):
        name = strongest_baseline(row)
        if row["role"] == tables.PRODUCTION and row["outcomes"] >= settings.monitor_min_outcomes and \
                row["accuracy"] + settings.monitor_accuracy_slack < row[name]:
            alerts.append((f"accuracy:{row['model_version']}",
                           f"live accuracy of version {row['model_version']} is {row['accuracy']:.3f}, below the "
                           f"strongest baseline ({name.removeprefix('baseline_')}) {row[name]:.3f} "
                           f"(over {row['outcomes']} outcomes)"))
    total_dead = sum(report.dead_letters.values())
    if total_dead > settings.monitor_max_dead_letters:
        alerts.append(("dead_letters", f"{total_dead} dead letters on {report.session} (Asia/Dhaka) > "
                                       f"{settings.monitor_max_dead_letters}"))
    return alerts


def _record_once(settings: Settings, engine, session: dt.date, alerts: list[tuple[str, str]]) -> None:
    """One `alert` row per (session, kind): a rerun of the day adds none."""
    table = tables.model_events
    with engine.connect() as conn:
        known = {(d.get("session"), d.get("kind")) for d in map(json.loads, conn.execute(
            select(table.c.details).where(table.c.event == "alert", table.c.source == SOURCE,
                                          table.c.model_name == settings.model_name)).scalars())}
    for kind, message in alerts:
        log.error("ALERT: %s", message)
        if (str(session), kind) not in known:
            database.record_event(engine, "alert", settings.model_name, source=SOURCE,
                                  details={"alert": message, "kind": kind, "session": str(session)})


def run(settings: Settings, day: dt.date) -> Report:
    """The report of the last session on or before ``day`` (Asia/Dhaka); alerts recorded once; returned."""
    engine = database.engine(settings)
    database.migrate(engine)
    session = session_for(settings, day)
    report = Report(session, drift=feature_drift(settings, engine, session),
                    accuracy=live_accuracy(engine, session - dt.timedelta(days=settings.monitor_accuracy_days - 1),
                                           session),
                    dead_letters=dead_letter_counts(engine, session))
    for row in report.accuracy.to_dict(orient="records"):
        best = strongest_baseline(row)
        log.info("live accuracy of %s version %s: %.3f over %d outcomes (strongest baseline %s %.3f)", row["role"],
                 row["model_version"], row["accuracy"], row["outcomes"], best.removeprefix("baseline_"), row[best])
    report.alerts = _alerts(settings, report)
    _record_once(settings, engine, session, report.alerts)
    return report
