"""Model: the served versions and the gate's decisions, live performance as monitoring judges it, live accuracy
against the baselines, calibration, drift."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.dashboard import charts, display, queries
from dse_platform.dashboard.views.common import chart, event_table, table
from dse_platform.data import store
from dse_platform.monitoring import live
from dse_platform.monitoring.drift import feature_drift

#: sessions each point of the rolling accuracy covers
ROLLING_SESSIONS = 20
#: days of outcomes the accuracy and calibration charts cover, by label
WINDOWS = {"90 days": 90, "180 days": 180, "1 year": 366, "all": None}
#: how long a computed drift is reused (it reads the bar store and recomputes the reference features)
DRIFT_TTL_S = 900


def render(settings: Settings, engine: Engine) -> None:
    st.header("Model")
    scored_day = queries.latest_prediction_date(engine)
    if scored_day is None:
        st.info("No predictions yet: promote a model (`dse train --promote`) and run the stream "
                "(`dse stream --background`), or run `make demo`.")
        _decisions(engine)
        return
    _served(engine, scored_day)
    _decisions(engine)
    _live(settings, engine, scored_day)
    label = st.segmented_control("Outcomes of bars dated in the last", list(WINDOWS), default="180 days",
                                 key="model_window", required=True)
    days = WINDOWS[label or "180 days"]
    since = dt.date.min if days is None else scored_day - dt.timedelta(days=days)
    _accuracy(engine, since)
    _calibration(engine, since)
    _drift(settings, engine, scored_day)


def _served(engine: Engine, day: dt.date) -> None:
    versions = queries.scored_versions(engine, day)
    columns = st.columns(2)
    for column, role in zip(columns, ("production", "challenger"), strict=True):
        rows = versions[versions["role"] == role]
        if rows.empty:
            column.metric(role.capitalize(), "none", help=f"no {role} predictions on {day}")
        else:
            column.metric(role.capitalize(), ", ".join("v" + rows["model_version"].astype(str)),
                          help=f"scored {int(rows['rows'].sum())} instruments on {day}; feature version "
                               f"{', '.join(rows['feature_version'].unique())}")
    st.caption(f"Versions that scored the latest session ({day}).")


def _decisions(engine: Engine) -> None:
    nightly = queries.events(engine, queries.DECISIONS, limit=1, source_prefix=tables.NIGHTLY_SOURCE_PREFIX)
    if nightly.empty:
        st.info("No nightly decision recorded yet (the `dse_nightly_retrain` DAG runs at 15:30 Sun-Thu).")
    else:
        row = event_table(nightly).iloc[0]
        st.success(f"Last nightly decision ({display.literal(str(row['source']))}): **{row['event']}** version "
                   f"{display.literal(str(row['version']))}: {display.literal(row['why'])}")
    st.subheader("Promotions and holds")
    decisions = queries.events(engine, queries.DECISIONS, limit=20)
    if decisions.empty:
        st.info("The gate has not decided anything yet (`dse promote`, or the nightly retrain).")
    else:
        table(event_table(decisions), "model_decisions")
    stream = queries.events(engine, queries.STREAM_EVENTS, limit=10)
    if not stream.empty:
        st.caption("What the streaming job loaded, and when:")
        table(event_table(stream), "model_stream_events")


@st.cache_data(ttl=DRIFT_TTL_S, show_spinner="Judging live performance…")
def _live_performance(_settings: Settings, _engine: Engine, url: str, day: dt.date) -> pd.DataFrame:
    return live.live_performance(_engine, day - dt.timedelta(days=_settings.monitor_live_days - 1), day,
                                 _settings.gate_confidence, _settings.gate_n_boot)


def live_table(performance: pd.DataFrame) -> pd.DataFrame:
    """Monitoring's figures as shown: per-date AUC beside the ex-ante baselines, then accuracy beside its own."""
    interval = performance.apply(lambda r: f"{r['edge']:+.3f} [{r['edge_low']:+.3f}, {r['edge_high']:+.3f}]", axis=1)
    return pd.DataFrame({"role": performance["role"], "version": performance["model_version"],
                         "sessions": performance["dates"], "outcomes": performance["outcomes"],
                         "per-date AUC": performance["auc"],
                         "AUC: yesterday's sign": performance["auc_yesterday_sign"],
                         "AUC: instrument rate": performance["auc_instrument_rate"],
                         "difference to the strongest": interval, "accuracy": performance["accuracy"] * 100,
                         "acc.: always up": performance["accuracy_always_up"] * 100,
                         "acc.: yesterday's sign": performance["accuracy_yesterday_sign"] * 100,
                         "acc.: majority in hindsight": performance["accuracy_majority_hindsight"] * 100})


def _live(settings: Settings, engine: Engine, day: dt.date) -> None:
    st.subheader("Live performance, as monitoring judges it")
    performance = _live_performance(settings, engine, engine.url.render_as_string(), day)
    if performance.empty:
        st.info(f"No resolved outcomes in the {settings.monitor_live_days} days to {day}: a prediction resolves "
                "when the next session's bar arrives.")
        return
    auc = st.column_config.NumberColumn(format="%.3f")
    percent = st.column_config.NumberColumn(format="%.1f%%")
    table(live_table(performance), "model_live_table", **{name: auc for name in (
        "per-date AUC", "AUC: yesterday's sign", "AUC: instrument rate")}, **{name: percent for name in (
            "accuracy", "acc.: always up", "acc.: yesterday's sign", "acc.: majority in hindsight")})
    st.caption(f"Outcomes of the {settings.monitor_live_days} days to {day}. The per-date AUC is the gate's metric; "
               "its baselines are known before each outcome (did the instrument close up today; its up-rate over "
               f"its last {live.TRAILING_SESSIONS} bars). The difference to the strongest has a "
               f"{settings.gate_confidence:.0%} date-bootstrap interval: production alerts when its upper end is "
               f"below {0 - settings.monitor_live_margin:g} over at least {settings.monitor_min_dates} sessions. "
               "Accuracy calls up at P >= 0.5; the majority is known only in hindsight, so it informs and never "
               "alerts.")


def rolling_accuracy(daily: pd.DataFrame, sessions: int = ROLLING_SESSIONS) -> pd.DataFrame:
    """Accuracy, always-up and majority baselines over each role and version's last ``sessions`` scored dates."""
    out = []
    for (role, version), part in daily.groupby(["role", "model_version"], sort=False):
        sums = part[["outcomes", "correct", "went_up"]].astype(float).rolling(sessions, min_periods=1).sum()
        up = sums["went_up"] / sums["outcomes"]
        out.append(pd.DataFrame({"date": part["date"], "role": role, "model_version": version,
                                 "accuracy": sums["correct"] / sums["outcomes"], "always_up": up,
                                 "majority": up.where(up >= 0.5, 1 - up)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _accuracy(engine: Engine, since: dt.date) -> None:
    st.subheader("Live accuracy")
    daily = queries.accuracy_by_day(engine, since)
    if daily.empty:
        st.info("No resolved outcomes in this window: a prediction resolves when the next session's bar arrives.")
        return
    chart(charts.accuracy_lines(rolling_accuracy(daily)), "model_accuracy")
    st.caption(f"Each point covers the last {ROLLING_SESSIONS} scored sessions. The majority baseline calls, in "
               "hindsight, the more frequent outcome of those sessions for every instrument; the window's totals "
               "are in the live performance table above.")


def _calibration(engine: Engine, since: dt.date) -> None:
    calib = queries.calibration(engine, since)
    if not calib.empty:
        chart(charts.calibration_chart(calib), "model_calibration")


@st.cache_data(ttl=DRIFT_TTL_S, show_spinner="Computing feature drift from the bar store…")
def _psi(_settings: Settings, _engine: Engine, url: str, session: dt.date) -> dict[str, float]:
    return feature_drift(_settings, _engine, session)


def _drift(settings: Settings, engine: Engine, session: dt.date) -> None:
    st.subheader("Feature drift")
    if not store.exists(settings.store_dir):
        st.info(f"Drift compares the streamed features with the bar store, and there is none at "
                f"{settings.store_dir} (`dse ingest` makes it).")
        return
    psi = pd.Series(_psi(settings, engine, engine.url.render_as_string(), session), dtype=float)
    if psi.empty:
        st.info(f"No streamed features of the current feature version in the {settings.monitor_drift_sessions} "
                f"sessions to {session}.")
        return
    chart(charts.drift_bar(psi, settings.monitor_psi_threshold), "model_drift")
    st.caption(f"PSI of each monitored feature over the {settings.monitor_drift_sessions} sessions to {session} "
               f"against the {settings.monitor_reference_sessions} sessions before them, each relative to its "
               f"session's median, as the monitoring DAG computes it; above {settings.monitor_psi_threshold} "
               "it alerts.")
