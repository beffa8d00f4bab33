"""A simulated trading month through the running platform, left alone at its default monitoring thresholds.

Twenty consecutive real DSE sessions (to 2025-08-19) are played one logical date at a time by
tests/support/month.py: live ticks from a fixture of DSE's live page, the official bars from a
fixture of the day-end archive (both the sessions' real rows), the supervised streaming job
scoring them, the nightly retrain folding them into the store and gating a new model, and
monitoring judging the day. Two more sessions follow with production replaced by a constant
"up" model, and then drift is injected into the streamed features of a third of the market:
monitoring must fail on each with its alert. The constant model gives every instrument the same
P(up) from its first session, so it ranks nothing and monitoring says so that day, before any of
its outcomes (its per-date AUC needs DSE_MONITOR_MIN_DATES sessions before it can alert).

Non-default settings, and why: 3 walk-forward folds of 40 sessions (training runs every night:
the defaults would triple the month's time; the gate and monitoring are at their defaults), and
a store from 2023 on (the model needs years, not all twelve).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select, update

import mlflow
from dse_platform.config import PROJECT_DIR, Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.model import dataset, features, gate, registry, training
from dse_platform.runtime import airflow_env, supervisor
from dse_platform.serving import database
from dse_platform.streams import kafka_io, replay
from tests.support.platform import DSE, free_port, fresh_database, settings_for, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

CLEAN_SESSIONS = 20
WARM_UP_SESSIONS = 60  # replayed before the month: more than the features' lookback


@pytest.fixture(scope="module")
def calendar_sessions(shipped_store) -> list[dt.date]:
    """The 22 sessions with the whole market to 2025-08-21: the month and two alert sessions."""
    _, shipped = shipped_store
    per_day = store.read_bars(shipped, start=dt.date(2025, 6, 1), end=dt.date(2025, 8, 21),
                              columns=["symbol", "date"]).groupby("date").size()
    return sorted(per_day[per_day > 300].index)[-(CLEAN_SESSIONS + 2):]


@pytest.fixture(scope="module")
def month(platform, platform_env, shipped_store, calendar_sessions, tmp_path_factory) -> dict:
    """The platform's own copy for the month: a store ending before it, fresh topics, database and model."""
    _, shipped = shipped_store
    first = calendar_sessions[0]
    target = tmp_path_factory.mktemp("monthstore") / "store"
    bars = store.read_bars(shipped, start=dt.date(2023, 1, 1), end=first - dt.timedelta(days=1))
    # DSE publishes its holiday calendar ahead of the year: the store knows the month's sessions, not its bars
    store.write_store(target, bars, store.read_calendar(shipped),
                      {"quality_report.json": (shipped / "quality_report.json").read_bytes()})
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    env = {**platform_env, "DSE_STORE_DIR": str(target), "DSE_DB_URL": fresh_database(platform),
           "DSE_MODEL_NAME": f"month-{tag}", "DSE_BARS_TOPIC": f"bars-{tag}", "DSE_TICKS_TOPIC": f"ticks-{tag}",
           "DSE_PREDICTIONS_TOPIC": f"pred-{tag}", "DSE_DEADLETTER_TOPIC": f"dead-{tag}",
           "DSE_EOD_URL": f"http://127.0.0.1:{port}/day_end_archive.php",
           "DSE_LIVE_URL": f"http://127.0.0.1:{port}/latest_share_price_scroll_l.php",
           "DSE_TRAIN_FOLDS": "3", "DSE_TRAIN_TEST_SESSIONS": "40", "DSE_STREAM_MODEL_POLL_S": "2",
           "DSE_SPARK_UI_PORT": str(free_port()),
           "DSE_STREAM_CHECKPOINT": str(Path(platform_env["DSE_HOME"]) / "checkpoints" / f"month-{tag}")}
    cfg = settings_for(env)
    kafka_io.ensure_topics(cfg, [cfg.bars_topic, cfg.ticks_topic, cfg.predictions_topic, cfg.deadletter_topic])
    gate.promote(cfg, training.train(cfg).version, force=True)
    return {"env": env, "settings": cfg, "port": port, "shipped": shipped}


def _count(engine, table, *where) -> int:
    """Rows of ``table`` matching ``where``; of predictions and outcomes, production's (the shadow's are apart)."""
    if "role" in table.c:
        where = (*where, table.c.role == tables.PRODUCTION)
    with engine.connect() as conn:
        return len(conn.execute(select(table.c.symbol).where(*where)).all())


def _drive(month: dict, sessions: list[dt.date], skip_retrain: list[dt.date] = ()) -> list[dict]:
    """Play ``sessions`` with tests/support/month.py in the platform's Airflow environment; its per-session lines."""
    env = {**month["env"], **airflow_env.airflow_environment(month["settings"])}
    proc = subprocess.run([sys.executable, "-m", "tests.support.month", "--source", str(month["shipped"]),
                           "--sessions", ",".join(map(str, sessions)), "--port", str(month["port"]),
                           "--skip-retrain", ",".join(map(str, skip_retrain))],
                          env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=3600)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(lines) == len(sessions), (proc.stdout[-3000:], proc.stderr[-6000:])
    return lines


@pytest.fixture(scope="module")
def played(platform, month, calendar_sessions) -> dict:
    """Warm-up replay, then the clean month, then two sessions served by a constant model, with the job supervised."""
    cfg, env = month["settings"], month["env"]
    engine = database.engine(cfg)
    sessions = store.read_calendar(cfg.store_dir).sessions
    before = [d for d in sessions if d < calendar_sessions[0]][-WARM_UP_SESSIONS:]
    overrides = {k: v for k, v in env.items() if k.startswith("DSE_")}
    server = supervisor.rpc(platform).supervisor
    supervisor.start_program(cfg, "stream", overrides)
    try:
        replay.replay(cfg, before[0], before[-1], None, progress=False, echo=lambda _: None)
        wait_for(lambda: _count(engine, tables.predictions, tables.predictions.c.date == before[-1]) > 300, 900,
                 "the warm-up's last session scored")
        clean = _drive(month, calendar_sessions[:CLEAN_SESSIONS])
        constant = _register_constant_model(cfg)
        gate.promote(cfg, constant, force=True)
        wait_for(lambda: ((e := database.read_frame(engine, "model_events"))["event"].eq("reloaded")
                          & e["version"].eq(constant)).any(), 60, "the job to serve the constant model")
        alerting = _drive(month, calendar_sessions[CLEAN_SESSIONS:], skip_retrain=calendar_sessions[CLEAN_SESSIONS:])
        assert server.getProcessInfo("stream")["statename"] == "RUNNING", supervisor.log_tail(cfg, "stream", 40)
    finally:
        if server.getProcessInfo("stream")["statename"] in supervisor.RUNNING_STATES:
            server.stopProcess("stream")
    return {"clean": clean, "alerting": alerting, "constant": constant, "engine": engine}


def _register_constant_model(cfg: Settings) -> str:
    """A registered model that calls "up" for every bar (P = 0.98): what a broken retrain could serve."""
    data = dataset.build(cfg.store_dir, start=dt.date(2025, 1, 1))
    model = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression())]).fit(data.X, data.y)
    model.named_steps["logreg"].coef_[:] = 0.0
    model.named_steps["logreg"].intercept_[:] = 4.0
    example = data.X.head(5)
    registry.configure(cfg)  # the tracking URI and the server's login
    mlflow.set_experiment("month-constant-model")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
                                        pyfunc_predict_fn="predict_proba", registered_model_name=cfg.model_name,
                                        signature=infer_signature(example, model.predict_proba(example)))
    version = str(info.registered_model_version)
    registry.tag_version(cfg, version, {"feature_version": features.FEATURE_VERSION})
    return version


def test_every_session_is_scored_resolved_and_retrained(played, month, calendar_sessions):
    engine, cfg = played["engine"], month["settings"]
    clean = calendar_sessions[:CLEAN_SESSIONS]
    assert [line["day"] for line in played["clean"]] == [str(d) for d in clean]
    assert all(line["eod"] == "success" and line["retrain"] == "success" for line in played["clean"]), played["clean"]
    p, o = tables.predictions, tables.prediction_outcomes
    for day, line in zip(clean, played["clean"], strict=True):
        assert _count(engine, p, p.c.date == day) >= 0.9 * line["traded"], f"predictions of {day}"
    for previous, day in itertools.pairwise(clean):
        assert _count(engine, o, o.c.next_date == day, o.c.date == previous) >= 0.9 * _count(
            engine, p, p.c.date == previous), f"outcomes of {previous} resolved on {day}"
    events = database.read_frame(engine, "model_events")
    for day in clean:
        decided = events[events["source"] == f"nightly retrain {day}"]
        assert len(decided) == 1 and decided["event"].iloc[0] in ("promoted", "held"), (day, decided)
        assert json.loads(decided["details"].iloc[0])["reason"], day
    assert database.read_frame(engine, "dead_letters").empty
    folded = store.read_bars(cfg.store_dir, start=clean[0], columns=["date", "source_file"])
    assert sorted(folded["date"].unique()) == clean and set(folded["source_file"]) == {"stream:eod"}


def test_monitoring_passes_every_clean_session_at_its_defaults(played, calendar_sessions):
    engine = played["engine"]
    assert all(line["monitoring"] == "success" for line in played["clean"]), played["clean"]
    raised = [kind for day in calendar_sessions[:CLEAN_SESSIONS] for kind in _alerts(engine, day)]
    assert not raised, raised


def test_a_constant_production_model_fails_monitoring_with_its_alert(played, calendar_sessions):
    last = played["alerting"][-1]
    assert last["monitoring"] == "failed", played["alerting"]
    raised = _alerts(played["engine"], calendar_sessions[-1])
    assert f"collapsed:{played['constant']}" in raised, raised


def test_injected_drift_fails_monitoring_with_a_drift_alert(played, month, calendar_sessions):
    """One instrument in three gets four times its streamed drift-monitored feature values over the window.

    Measured offline on the same sessions: clean, the largest PSI is 0.124 (flat_share_20); so injected,
    volatility_20 0.58, vol_ratio_5_20 0.68 and flat_share_20 0.69 against the 0.25 threshold. One in seven
    stays under it (0.246 at most): drift over 20 sessions of the whole market needs a broad change.
    """
    engine, cfg = played["engine"], month["settings"]
    window_start = calendar_sessions[-cfg.monitor_drift_sessions]
    stored = database.read_frame(engine, select(tables.features).where(tables.features.c.date >= window_start))
    chosen = stored[stored["symbol"].isin(sorted(stored["symbol"].unique())[::3])]
    values = features.decode(chosen["values"])
    values[features.DRIFT_FEATURES] = values[features.DRIFT_FEATURES] * 4.0
    f = tables.features
    with engine.begin() as conn:
        for row, (_, new) in zip(chosen.itertuples(), values.iterrows(), strict=True):
            conn.execute(update(f).where(f.c.symbol == row.symbol, f.c.date == row.date)
                         .values({"values": features.encode(new)}))
    day = calendar_sessions[-1]
    proc = subprocess.run([DSE, "airflow", "dags", "test", "dse_monitoring", f"{day}T16:00:00+06:00"],
                          env=month["env"], capture_output=True, text=True, timeout=900, cwd=PROJECT_DIR)
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-4000:]
    raised = _alerts(engine, day)
    assert any(kind.startswith("drift:") for kind in raised), raised


def _alerts(engine, day: dt.date) -> list[str]:
    events = database.read_frame(engine, "model_events")
    details = [json.loads(d) for d in events.loc[events["event"] == "alert", "details"]]
    return [d["kind"] for d in details if d.get("session") == str(day)]


def test_the_month_left_the_serving_tables_consistent(played):
    """Each stored prediction's outcome agrees with the stored bars (spot check of the month's last week)."""
    engine = played["engine"]
    outcomes = database.read_frame(engine, select(tables.prediction_outcomes).where(
        tables.prediction_outcomes.c.role == tables.PRODUCTION))
    bars = database.read_frame(engine, "bars").set_index(["symbol", "date"])["close"]
    recent = outcomes[outcomes["date"] >= outcomes["date"].max() - dt.timedelta(days=7)]
    assert len(recent) > 300
    up = pd.Series([bars[(r.symbol, r.next_date)] > bars[(r.symbol, r.date)] for r in recent.itertuples()])
    assert (up.astype(int).to_numpy() == recent["actual"].to_numpy()).all()
