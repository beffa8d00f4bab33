"""Pipeline: produce-to-row lag and throughput, micro-batches, dead letters with safe samples, health, alerts."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from dse_platform.config import Settings
from dse_platform.dashboard import charts, checkpoint, display, queries
from dse_platform.dashboard.status import StatusProbe
from dse_platform.dashboard.views.common import chart, event_table, table
from dse_platform.runtime import supervisor

WINDOWS = {"1 hour": dt.timedelta(hours=1), "6 hours": dt.timedelta(hours=6), "24 hours": dt.timedelta(days=1),
           "7 days": dt.timedelta(days=7), "30 days": dt.timedelta(days=30)}
PAGE_SIZE = 20
#: how long one probe of every service's health is shown before it is asked again
HEALTH_TTL_S = 15
#: how long a page waits for the first probe (later pages show the last answer at once)
HEALTH_WAIT_S = 1


def lag_labels() -> list[str]:
    """The histogram's bucket names, from LAG_EDGES_MS."""
    def seconds(ms: int) -> str:
        return f"{ms / 1000:g} s" if ms < 60_000 else f"{ms // 60_000} min"
    edges = queries.LAG_EDGES_MS
    return [f"< {seconds(edges[0])}", *(f"{seconds(a)}-{seconds(b)}" for a, b in itertools.pairwise(edges)),
            f">= {seconds(edges[-1])}"]


def lag_quantile(buckets: pd.DataFrame, q: float) -> str:
    """The lag bucket the q-quantile falls in."""
    cumulative = buckets["rows"].cumsum() / buckets["rows"].sum()
    return lag_labels()[int(buckets.loc[cumulative >= q, "bucket"].iloc[0])]


def render(settings: Settings, engine: Engine) -> None:
    st.header("Pipeline")
    label = st.segmented_control("Window", list(WINDOWS), default="24 hours", key="pipeline_window", required=True)
    since = dt.datetime.now(dt.UTC) - WINDOWS[label or "24 hours"]
    _lag(engine, since)
    _batches(settings)
    _dead_letters(engine, since)
    _alerts(engine)
    _health(settings)


def _lag(engine: Engine, since: dt.datetime) -> None:
    st.subheader("Produced to committed")
    minutes = queries.lag_by_minute(engine, since)
    if minutes.empty:
        st.info("No predictions were committed in this window.")
        return
    minutes["time"] = display.dhaka_ms(minutes["minute"] * 60_000)
    buckets = queries.lag_histogram(engine, since)
    buckets["label"] = [lag_labels()[int(b)] for b in buckets["bucket"]]
    rows = int(minutes["rows"].sum())
    columns = st.columns(4)
    columns[0].metric("Predictions committed", f"{rows:,}")
    columns[1].metric("Mean lag", f"{(minutes['mean_lag_ms'] * minutes['rows']).sum() / rows / 1000:.2f} s")
    columns[2].metric("Median lag", lag_quantile(buckets, 0.5))
    columns[3].metric("95th percentile", lag_quantile(buckets, 0.95))
    left, right = st.columns(2)
    with left:
        chart(charts.lag_chart(minutes), "pipeline_lag")
    with right:
        chart(charts.lag_histogram_bar(buckets), "pipeline_lag_histogram")
    chart(charts.throughput_chart(minutes), "pipeline_throughput")
    st.caption("Lag: a production prediction row's commit time (`scored_at`) minus the time its bar entered Kafka "
               "(`produced_at`). A replayed batch that changes nothing keeps its first commit time.")


def _batches(settings: Settings) -> None:
    st.subheader("Micro-batches")
    batches = checkpoint.micro_batches(settings.stream_checkpoint)
    if batches.empty:
        st.info(f"No committed micro-batches in the streaming job's checkpoint ({settings.stream_checkpoint}). "
                "Batch durations and records per second come from there, on the machine the job runs on.")
        return
    columns = st.columns(3)
    columns[0].metric("Batches shown", f"{len(batches)}", help="Spark keeps the last 100 in its checkpoint")
    columns[1].metric("Median duration", f"{batches['duration_s'].median():.2f} s")
    columns[2].metric("Median throughput", f"{batches['records_per_s'].median():,.0f} records/s")
    chart(charts.batches_chart(batches), "pipeline_batches")
    st.caption("From the streaming job's checkpoint: each batch's records are its Kafka end offsets minus the "
               "previous batch's, its duration from when Spark planned it to when it committed.")


def _dead_letters(engine: Engine, since: dt.datetime) -> None:
    st.subheader("Dead letters")
    reasons = queries.dead_letter_reasons(engine, since)
    if reasons.empty:
        st.info("No dead letters in this window.")
        return
    chart(charts.dead_letters_bar(reasons), "pipeline_dead_letters")
    left, right = st.columns([3, 1])
    reason = left.selectbox("Samples of", reasons["reason"].tolist(), key="pipeline_dead_reason")
    count = int(reasons.loc[reasons["reason"] == reason, "count"].iloc[0])
    pages = max(1, -(-count // PAGE_SIZE))
    page = right.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                              key="pipeline_dead_page")
    sample = queries.dead_letter_page(engine, reason, since, int(page) - 1, PAGE_SIZE)
    shown = pd.DataFrame({
        f"received ({display.TZ_LABEL})": display.dhaka(sample["received_at"]),
        "topic": sample["topic"], "partition": sample["partition"], "offset": sample["offset"],
        "field": sample["field"], "size (bytes)": sample["raw_size"],
        "raw (escaped, cut)": sample["raw"].map(display.safe_bytes)})
    table(shown, "pipeline_dead_sample", **{"raw (escaped, cut)": st.column_config.TextColumn(width="large")})
    st.caption("Raw bytes are shown as text: UTF-8 where valid, every other byte and control character escaped "
               f"(\\xNN, \\n), cut at {display.RAW_PREVIEW_CHARS} characters; the database keeps the first 4 KiB.")


def _alerts(engine: Engine) -> None:
    st.subheader("Alerts")
    alerts = queries.events(engine, ("alert",), limit=20)
    if alerts.empty:
        st.info("No alerts: the monitoring DAG records one per session and kind past its thresholds.")
    else:
        table(event_table(alerts)[[f"at ({display.TZ_LABEL})", "source", "why"]], "pipeline_alerts")


@st.cache_resource
def _probe(_settings: Settings) -> StatusProbe:
    """One background prober per dashboard process, shared by every browser session."""
    return StatusProbe(lambda: supervisor.status(_settings), HEALTH_TTL_S)


def start_health_probe(settings: Settings) -> None:
    """Ask the services as the dashboard's first page is drawn, so the Pipeline page's first visit finds an answer."""
    _probe(settings).start()


def _health(settings: Settings) -> None:
    st.subheader("Services")
    answer = _probe(settings).latest(HEALTH_WAIT_S)
    if answer is None:
        st.info("Still asking each service (a service that is down can take its client 30 s to give up on); "
                "the answer shows at the next refresh.")
        return
    rows, age = answer
    table(pd.DataFrame(rows), "pipeline_health")
    st.caption(f"Each service's own health check (`dse status`), as seen from the dashboard's machine, "
               f"asked {age:.0f} s ago.")
