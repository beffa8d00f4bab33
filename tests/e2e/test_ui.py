"""In a real browser (Debian's Chromium through Playwright) against the session platform's UIs.

The Airflow UI triggers `dse_streaming` with params from its trigger form and the run
succeeds; invalid params fail the run fast with the reason in the task log. In the MLflow
UI the `production` alias moves to another version and the running streaming job follows.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess

import httpx
import pytest

from dse_platform.data import store
from dse_platform.data.instruments import DSEX, is_index
from dse_platform.model import gate, registry, training
from dse_platform.runtime.airflow_env import admin_password
from dse_platform.serving import database
from dse_platform.streams import replay
from tests.support.browser import (
    airflow_login,
    airflow_token,
    airflow_trigger,
    airflow_wait_run,
    mlflow_screenshot,
    mlflow_set_alias,
    screenshot,
)
from tests.support.platform import DSE, free_port, small_store, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def traded_throughout(store_dir, start: dt.date, end: dt.date, count: int) -> list[str]:
    """Stocks with a bar in every session of [start, end] (so every replay of them has data)."""
    bars = store.read_bars(store_dir, start=start, end=end, columns=["symbol", "date"])
    per_symbol = bars.groupby("symbol")["date"].nunique()
    full = per_symbol[per_symbol == bars["date"].nunique()].index
    return sorted(c for c in full if not is_index(c))[:count]


@pytest.fixture(scope="module")
def symbols(shipped_store) -> list[str]:
    return traded_throughout(shipped_store[1], dt.date(2025, 1, 1), dt.date(2025, 8, 25), 10)


@pytest.fixture(scope="module")
def ready(platform, shipped_store, symbols):
    """The session platform's own defaults filled in: a store, a production model with two versions."""
    _, shipped = shipped_store
    if not store.exists(platform.store_dir):
        small_store(shipped, platform.store_dir, [DSEX, *symbols])
    cfg = platform.model_copy(update={"train_folds": 3, "train_test_sessions": 40})
    if registry.production_ref(cfg) is None:
        first = training.train(cfg)
        training.train(cfg, cutoff=dt.date(2023, 12, 31))
        gate.promote(cfg, first.version, force=True)
    return cfg


def _unpause(base: str, token: str, dag_id: str) -> None:
    wait_for(lambda: httpx.get(f"{base}/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {token}"},
                               timeout=10).status_code == 200, 120, f"Airflow to parse {dag_id}", every_s=2)
    httpx.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False},
                headers={"Authorization": f"Bearer {token}"}, timeout=10).raise_for_status()


def _task_log(base: str, token: str, dag_id: str, run_id: str, task_id: str) -> str:
    response = httpx.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                         headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}, timeout=30)
    # structured lines: the exception's message sits in their error details, so search the whole JSON
    return response.text


def _failures(base: str, token: str, dag_id: str, run_id: str) -> str:
    """The logs of a run's failed tasks, for the assertion message."""
    tis = httpx.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                    headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["task_instances"]
    return "\n".join(f"--- {ti['task_id']}: {ti['state']}\n" + _task_log(base, token, dag_id, run_id,
                                                                          ti["task_id"])[-3000:]
                     for ti in tis if ti["state"] not in ("success", None))


def test_trigger_dse_streaming_from_the_airflow_ui(ready, symbols, ui_page):
    base = ready.airflow_url
    password = admin_password(ready)
    token = airflow_token(base, "admin", password)
    _unpause(base, token, "dse_streaming")
    airflow_login(ui_page, base, "admin", password)
    run_id = airflow_trigger(ui_page, base, "dse_streaming", {
        "start": "2025-06-01", "end": "2025-08-25", "symbols": symbols[:5], "speed": 0,
        "trigger": "available-now", "run_time_limit_s": 0})
    state = airflow_wait_run(base, token, "dse_streaming", run_id, timeout_s=900)
    ui_page.goto(f"{base}/dags/dse_streaming/runs/{run_id}")
    screenshot(ui_page, "ui/dse_streaming-run.png")
    assert state == "success", _failures(base, token, "dse_streaming", run_id)
    preds = database.read_frame(database.engine(ready), "predictions")
    assert set(symbols[:5]) & set(preds["symbol"])

    bad = airflow_trigger(ui_page, base, "dse_streaming", {
        "start": "2025-08-25", "end": "2025-06-01", "symbols": ["NOSUCHCODE"], "speed": 0,
        "trigger": "available-now", "run_time_limit_s": 0})
    assert airflow_wait_run(base, token, "dse_streaming", bad, timeout_s=300) == "failed"
    screenshot(ui_page, "ui/dse_streaming-rejected.png")
    assert "is after end" in _task_log(base, token, "dse_streaming", bad, "check_params")


def test_moving_the_alias_in_the_mlflow_ui_switches_the_running_job(ready, symbols, platform_env, ui_page):
    versions = sorted(int(v) for v in registry.list_models(ready)["version"])
    before = registry.production_ref(ready).version
    target = next(v for v in versions if str(v) != before)
    tag = os.urandom(4).hex()
    cfg = ready.model_copy(update={"bars_topic": f"ui-bars-{tag}"})
    env = {**platform_env, "DSE_BARS_TOPIC": cfg.bars_topic, "DSE_STORE_DIR": str(ready.store_dir),
           "DSE_STREAM_CHECKPOINT": str(ready.home / "checkpoints" / f"ui-{tag}"),
           "DSE_SPARK_UI_PORT": str(free_port()), "DSE_STREAM_MODEL_POLL_S": "2"}
    engine = database.engine(ready)
    job = subprocess.Popen([DSE, "stream"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        wait_for(lambda: ((e := database.read_events(engine, 200))["event"].eq("reloaded")
                          & e["version"].eq(before)).any(), 300, "the job to load the production model")
        mlflow_set_alias(ui_page, ready.tracking_uri, ready.model_name, target, "production")
        mlflow_screenshot(ui_page, ready.tracking_uri, ready.model_name, target, "ui/mlflow-alias-moved.png")
        wait_for(lambda: ((e := database.read_events(engine, 200))["event"].eq("reloaded")
                          & e["version"].eq(str(target))).any(), 30, "the job to reload the new version")
        replay.replay(cfg, dt.date(2025, 3, 1), dt.date(2025, 5, 31), symbols[5:], progress=False,
                      echo=lambda _: None)
        wait_for(lambda: (p := database.read_frame(engine, "predictions"))[
            p["symbol"].isin(symbols[5:]) & (p["date"] >= dt.date(2025, 5, 25))].shape[0] > 0, 300,
                 "predictions after the switch")
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
        if registry.production_ref(ready).version != before:
            gate.promote(ready, before, force=True)
    preds = database.read_frame(engine, "predictions")
    mine = preds[preds["symbol"].isin(symbols[5:]) & (preds["date"] >= dt.date(2025, 3, 1))
                 & (preds["date"] <= dt.date(2025, 5, 31))]
    assert len(mine) > 0 and set(mine["model_version"]) == {str(target)}
