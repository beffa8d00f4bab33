"""Daily monitoring of one trading session: feature drift, live accuracy per role and version, dead letters.

The run is for a day (Asia/Dhaka; the DAG passes its logical date there) and covers the last
trading session on or before it, so a rerun for the same day reads the same rows and gives
the same report. Drift is the population stability index (PSI) of each drift-monitored
feature over the last DSE_MONITOR_DRIFT_SESSIONS sessions against the reference sessions
before them (`drift.feature_drift`). Live accuracy covers outcomes of bars dated in the
DSE_MONITOR_LIVE_DAYS up to the session (`live.live_performance`): per-date AUC beside the
strongest baseline known in advance, for the production model and the challenger scored in
shadow; only production's (what was served) can alert, once it covers DSE_MONITOR_MIN_DATES
sessions and DSE_MONITOR_MIN_OUTCOMES outcomes, when the upper end of the gate's interval of its
difference to that baseline is below -DSE_MONITOR_LIVE_MARGIN: the promotion's claim no longer
holds. A production version that gives the whole session one probability alerts on its first
day (`live.collapsed`). Dead letters are
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
from dse_platform.monitoring import live
from dse_platform.monitoring.drift import feature_drift
from dse_platform.serving import database

log = logging.getLogger("dse.monitoring")
SOURCE = "monitoring"


@dataclass
class Report:
    session: dt.date
    drift: dict[str, float] = field(default_factory=dict)
    live: pd.DataFrame = field(default_factory=pd.DataFrame)
    collapsed: pd.DataFrame = field(default_factory=pd.DataFrame)
    dead_letters: dict[str, int] = field(default_factory=dict)
    #: (kind, message): kind names what crossed (e.g. ``drift:ret_20``), one alert per session and kind
    alerts: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"session": str(self.session), "drift": self.drift, "dead_letters": self.dead_letters,
                "alerts": [message for _, message in self.alerts],
                "live": self.live.to_dict(orient="records"), "collapsed": self.collapsed.to_dict(orient="records")}


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
    for row in report.live.to_dict(orient="records"):
        if row["role"] == tables.PRODUCTION and row["dates"] >= settings.monitor_min_dates and \
                row["outcomes"] >= settings.monitor_min_outcomes and row["edge_high"] < -settings.monitor_live_margin:
            alerts.append((f"live:{row['model_version']}",
                           f"live per-date AUC of version {row['model_version']} is {row['auc']:.3f} over "
                           f"{row['dates']} sessions ({row['outcomes']} outcomes), below the strongest baseline "
                           f"({row['strongest'].replace('_', ' ')}) {row['auc_' + row['strongest']]:.3f}: the "
                           f"difference is {row['edge']:+.3f}, at most {row['edge_high']:+.3f} at "
                           f"{settings.gate_confidence:.0%} confidence"))
    for row in report.collapsed.to_dict(orient="records"):
        alerts.append((f"collapsed:{row['model_version']}",
                       f"version {row['model_version']} gave all {row['rows']} instruments of {report.session} the "
                       f"same P(up) {row['probability']:.3f}: it ranks nothing"))
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
    since = session - dt.timedelta(days=settings.monitor_live_days - 1)
    report = Report(session, drift=feature_drift(settings, engine, session),
                    live=live.live_performance(engine, since, session, settings.gate_confidence, settings.gate_n_boot),
                    collapsed=live.collapsed(engine, session), dead_letters=dead_letter_counts(engine, session))
    for row in report.live.to_dict(orient="records"):
        log.info("live per-date AUC of %s version %s: %.3f over %d sessions, %d outcomes (strongest baseline %s "
                 "%.3f, difference %+.3f [%+.3f, %+.3f]); accuracy %.3f (always up %.3f, yesterday's sign %.3f, "
                 "majority in hindsight %.3f)", row["role"], row["model_version"], row["auc"], row["dates"],
                 row["outcomes"], row["strongest"], row["auc_" + row["strongest"]], row["edge"], row["edge_low"],
                 row["edge_high"], row["accuracy"], row["accuracy_always_up"], row["accuracy_yesterday_sign"],
                 row["accuracy_majority_hindsight"])
    report.alerts = _alerts(settings, report)
    _record_once(settings, engine, session, report.alerts)
    return report
