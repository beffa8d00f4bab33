"""The compose deployment, built and run for real (`make test-deploy`, after `make test` in CI).

One stack for the module: Debian's Docker Engine (started here when not running), the base image made
by debootstrap when absent, both images built from the working tree, every service up and healthy.
Then the platform is used as a user of the stack would: through Airflow's REST API (the streaming DAG
replays bars and submits the job onto the Spark cluster; the nightly retrain trains and gates), with
results read from the serving database as the dashboard's read-only role. Torn down (volumes too) at
the end, and the daemon stopped if this module started it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from dse_platform.config import PROJECT_DIR
from dse_platform.deploy import compose_env, engine
from dse_platform.deploy.stack import Stack
from tests.support.platform import free_port, service_home, wait_for

PROJECT = "dse-deploy-test"
PORTS = ["AIRFLOW_HOST_PORT", "MLFLOW_HOST_PORT", "DASHBOARD_HOST_PORT", "SPARK_MASTER_UI_HOST_PORT",
         "STREAM_UI_HOST_PORT", "POSTGRES_HOST_PORT", "KAFKA_HOST_PORT", "KAFKA_2_HOST_PORT", "KAFKA_3_HOST_PORT"]
#: what the streaming DAG replays: months of lookback before the scored weeks (the model saw none of it)
STREAM_CONF = {"start": "2025-05-01", "end": "2025-08-25", "speed": 0, "trigger": "available-now",
               "run_time_limit_s": 0,
               "symbols": ["ACI", "BATBC", "BEXIMCO", "BRACBANK", "GP", "SQURPHARMA", "RENATA", "OLYMPIC"]}


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, dict[str, str]]]:
    home = service_home("deploy")
    daemon = engine.start_daemon(home / "dockerd.log")
    try:
        engine.ensure_base_image(print, work_dir=home)
        engine.copy_ca_bundle(PROJECT_DIR)
        # DAGs start paused: only what a test triggers runs (the live-ingest DAG would call DSE's website)
        env_file = compose_env.write(home / "compose.env", PROJECT_DIR / ".env.example",
                                     {**{p: str(free_port()) for p in PORTS}, "DSE_AIRFLOW_DAGS_PAUSED": "True"})
        st = Stack(PROJECT_DIR / "docker-compose.yml", env_file, PROJECT)
        st.compose("down", "-v", "--remove-orphans")  # what an interrupted run left
        st.build()
        try:
            st.up()
            st.wait_ready(timeout_s=900)
            yield st, compose_env.read(env_file)
        finally:
            st.compose("down", "-v", "--remove-orphans", check=False)
    finally:
        daemon.stop()


def _airflow(env: dict[str, str]) -> httpx.Client:
    """A client of the stack's Airflow API, logged in as admin with the generated password."""
    base = f"http://127.0.0.1:{env['AIRFLOW_HOST_PORT']}"
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": env["AIRFLOW_ADMIN_PASSWORD"]},
                       timeout=30).raise_for_status().json()["access_token"]
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _run_dag(client: httpx.Client, dag_id: str, conf: dict, timeout_s: float) -> dict:
    """Unpause, trigger and wait for one run of ``dag_id``; the finished run."""
    client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    run = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = run.raise_for_status().json()["dag_run_id"]

    def finished() -> dict | None:
        got = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").raise_for_status().json()
        return got if got["state"] in ("success", "failed") else None

    done = wait_for(finished, timeout_s, f"{dag_id} run {run_id} to finish", every_s=10)
    if done["state"] != "success":
        tasks = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        pytest.fail(f"{dag_id} failed: " + ", ".join(f"{t['task_id']}={t['state']}" for t in tasks))
    return done


def _reader(env: dict[str, str]) -> sa.Engine:
    """The serving database as the dashboard's read-only role sees it, through the published port."""
    user = env.get("DSE_DASHBOARD_DB_USER", "dse_reader")
    return sa.create_engine(f"postgresql+psycopg2://{user}:{env['READER_DB_PASSWORD']}@127.0.0.1:"
                            f"{env['POSTGRES_HOST_PORT']}/dse")


def test_every_service_is_healthy_and_every_one_shot_job_succeeded(stack):
    st, _ = stack
    states = {s.service: s for s in st.states()}
    assert st.one_shots() <= set(states), f"one-shot jobs that never ran: {st.one_shots() - set(states)}"
    assert {"postgres", "kafka", "mlflow", "spark-master", "spark-worker", "stream", "airflow-apiserver",
            "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "dashboard"} <= set(states)
    assert all(s.ready for s in states.values()), [str(s) for s in states.values() if not s.ready]


def test_airflow_refuses_requests_without_credentials(stack):
    _, env = stack
    base = f"http://127.0.0.1:{env['AIRFLOW_HOST_PORT']}"
    assert httpx.get(f"{base}/api/v2/dags", timeout=30).status_code == 401
    bad = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
    assert bad.status_code == 401


def test_mlflow_refuses_requests_without_credentials_and_serves_the_platform_login(stack):
    _, env = stack
    url = f"http://127.0.0.1:{env['MLFLOW_HOST_PORT']}/api/2.0/mlflow/registered-models/search"
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, auth=("admin", "password1234"), timeout=30).status_code == 401
    models = httpx.get(url, auth=("admin", env["MLFLOW_ADMIN_PASSWORD"]), timeout=30).raise_for_status().json()
    assert [m["name"] for m in models["registered_models"]] == ["dse-direction"], "first-model logged in and registered"
    assert httpx.get(f"http://127.0.0.1:{env['MLFLOW_HOST_PORT']}/health", timeout=30).status_code == 200


def test_kafka_refuses_a_client_without_the_scram_login(stack):
    """Through the EXTERNAL port a host tool uses: no login gets no metadata, the .env login lists the topics."""
    _, env = stack
    servers = f"127.0.0.1:{env['KAFKA_HOST_PORT']}"
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=5000, bootstrap_timeout_ms=10000).close()
    admin = KafkaAdminClient(bootstrap_servers=servers, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="dse",
                             sasl_plain_password=env["KAFKA_PASSWORD"], request_timeout_ms=10000)
    try:
        assert {"dse.bars.v1", "dse.ticks.v1", "dse.predictions.v1", "dse.deadletter.v1"} <= set(admin.list_topics())
    finally:
        admin.close()


def test_streaming_dag_through_the_rest_api_stores_predictions(stack):
    st, env = stack
    # the `stream` service holds the checkpoint the DAG's job uses: a user stops it first (the compose file says so)
    st.compose("stop", "stream")
    started = time.monotonic()
    with _airflow(env) as client:
        _run_dag(client, "dse_streaming", STREAM_CONF, timeout_s=1200)
    print(f"dse_streaming through the REST API: {time.monotonic() - started:.0f} s")
    with _reader(env).connect() as conn:
        rows = conn.execute(sa.text("SELECT symbol, date, model_version FROM predictions WHERE role = 'production'")
                            ).all()
    assert rows, "no predictions in the serving database"
    assert {r.symbol for r in rows} == set(STREAM_CONF["symbols"]), "every replayed instrument is scored"
    dates = {r.date for r in rows}
    assert dt.date.fromisoformat(STREAM_CONF["start"]) < min(dates) <= max(dates)
    assert max(dates) == dt.date.fromisoformat(STREAM_CONF["end"]), "the last replayed session is scored"
    assert {r.model_version for r in rows} == {"1"}, "scored by the first model, the only production version"


def test_nightly_retrain_through_the_rest_api_trains_and_gates_a_new_version(stack):
    _, env = stack
    with _airflow(env) as client:
        _run_dag(client, "dse_nightly_retrain", {}, timeout_s=1200)
    with _reader(env).connect() as conn:
        events = conn.execute(sa.text("SELECT event, details FROM model_events ORDER BY at")).all()
    assert any(e.event in ("promoted", "held") for e in events), events
