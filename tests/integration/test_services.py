"""`dse up` / `dse down` against the real services: Kafka, MLflow, PostgreSQL and Airflow."""

from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import subprocess
import uuid

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text

import mlflow
from dse_platform.config import PROJECT_DIR, Settings, get_settings
from dse_platform.model import registry
from dse_platform.runtime import airflow_env, broker, health
from dse_platform.runtime.services import services
from dse_platform.runtime.supervisor import port_in_use
from tests.support.platform import platform_env_for, run_dse, settings_for, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _kafka_round_trip(settings) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    sent = {f"k{i}": f"v{i}" for i in range(20)}
    for k, v in sent.items():
        producer.send(topic, key=k.encode(), value=v.encode())
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, group_id=f"g-{topic}")
    got = {}
    for msg in consumer:
        got[msg.key.decode()] = msg.value.decode()
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent


def _mlflow_round_trip(settings) -> None:
    session_login = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    session_uri = mlflow.get_tracking_uri()
    registry.configure(settings)  # this private platform's URI and generated login, as every platform client
    try:
        mlflow.set_experiment(f"roundtrip-{uuid.uuid4().hex[:6]}")
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", 0.5)
            mlflow.log_metric("auc", 0.61)
        fetched = MlflowClient(settings.tracking_uri).get_run(run.info.run_id)
    finally:  # later tests talk to the session platform again
        for key, value in session_login.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(session_uri)
    assert fetched.data.params["alpha"] == "0.5"
    assert fetched.data.metrics["auc"] == pytest.approx(0.61)


def _db_round_trip(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS roundtrip (k TEXT PRIMARY KEY, v DOUBLE PRECISION)"))
        conn.execute(text("DELETE FROM roundtrip"))
        conn.execute(text("INSERT INTO roundtrip VALUES ('BATBC', 376.5)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM roundtrip WHERE k = 'BATBC'")).scalar_one() == 376.5
    engine.dispose()


PROJECT_DAGS = {"dse_nightly_retrain", "dse_streaming", "dse_live_ingest", "dse_monitoring", "dse_end_of_day"}


def _airflow_get(settings, path: str, **params) -> dict:
    """One GET of Airflow's REST API as the generated admin."""
    token = httpx.post(f"{settings.airflow_url}/auth/token", timeout=10, json={
        "username": "admin", "password": airflow_env.admin_password(settings)}).json()["access_token"]
    return httpx.get(f"{settings.airflow_url}/api/v2/{path}", params=params, timeout=10,
                     headers={"Authorization": f"Bearer {token}"}).json()


def _project_dags(settings) -> dict[str, dict]:
    """dag_id -> Airflow's record of each project DAG."""
    return {d["dag_id"]: d for d in _airflow_get(settings, "dags", dag_id_pattern="dse_")["dags"]}


def test_up_round_trips_then_down_leaves_no_listener(home):
    # the defaults: DAGs are created unpaused, so their schedules run without anyone unpausing them
    env = {k: v for k, v in platform_env_for(home).items() if k != "DSE_AIRFLOW_DAGS_PAUSED"}
    settings = settings_for(env)
    ports = [p for s in services(settings) for p in s.ports]
    try:
        up = run_dse(env, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("kafka", "mlflow", "postgres", "airflow"):
            assert f"{name} healthy" in up.stdout
        status = run_dse(env, "status")
        assert status.returncode == 0 and status.stdout.count("healthy") >= 4, status.stdout
        _kafka_round_trip(settings)
        _mlflow_round_trip(settings)
        _db_round_trip(settings.serving_db_url)
        dags = wait_for(lambda: (found := _project_dags(settings)) and len(found) >= len(PROJECT_DAGS) and found,
                        180, "the project's DAGs to be parsed")
        assert set(dags) == PROJECT_DAGS and not any(d["is_paused"] for d in dags.values()), dags
        # a fresh platform runs nothing at once: each schedule's first run is its next moment, none is queued
        started = dt.datetime.now(dt.UTC)
        scheduled = {i: d["next_dagrun_run_after"] for i, d in dags.items() if i != "dse_streaming"}
        assert all(dt.datetime.fromisoformat(t) > started for t in scheduled.values()), scheduled
        assert _airflow_get(settings, "dags/~/dagRuns")["total_entries"] == 0
        logs = run_dse(env, "logs", "kafka", "-n", "5")
        assert logs.returncode == 0 and logs.stdout.strip()
    finally:
        down = run_dse(env, "down")
    assert down.returncode == 0, down.stderr
    assert [p for p in ports if port_in_use("127.0.0.1", p)] == []
    # nothing under var/ is lost: the broker's and the database's data stay for the next `dse up`
    assert (home / "kafka" / "data" / "meta.properties").exists()
    assert (home / "postgres" / "data" / "PG_VERSION").exists()
    status = run_dse(env, "status")
    assert status.returncode == 1 and "unhealthy" in status.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_serving_db_round_trip_on_both_backends(backend, platform, tmp_path):
    url = platform.serving_db_url if backend == "postgres" else f"sqlite:///{tmp_path / 'serving.db'}"
    _db_round_trip(url)


def test_port_in_use_is_refused_with_the_setting_to_change(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = platform_env_for(tmp_path / "home", DSE_MLFLOW_PORT=str(port), DSE_AIRFLOW_ENABLED="false")
        proc = run_dse(env, "up", timeout=120)
    assert proc.returncode == 2
    assert f"port {port} needed by mlflow is already in use" in proc.stderr
    assert "DSE_MLFLOW_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "supervisor" / "supervisor.sock").exists()


def test_broker_that_fails_to_start_is_reported_not_healthy(home):
    env = platform_env_for(home, DSE_AIRFLOW_ENABLED="false", DSE_DB_BACKEND="sqlite", DSE_HEALTH_TIMEOUT_S="120")
    data = home / "kafka" / "data"
    data.mkdir(parents=True)
    # a log dir formatted for another node: the broker refuses it and exits
    (data / "meta.properties").write_text(
        "version=1\nnode.id=7\ncluster.id=8vT6dFD0Q8WxTqfRG1nE2w\ndirectory.id=Q2Xx9k1mS3aCqT5bX0v1Yw\n")
    try:
        proc = run_dse(env, "up", timeout=300)
        assert proc.returncode == 2, proc.stdout
        assert "kafka failed to start" in proc.stderr or "kafka not healthy" in proc.stderr
        assert "dse logs" in proc.stderr or "kafka.log" in proc.stderr
        assert "kafka healthy" not in proc.stdout
    finally:
        run_dse(env, "down")


def _fake_java(tmp_path, version: str):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2021-01-19\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_java_too_old_gets_one_clear_line(tmp_path):
    env = platform_env_for(tmp_path / "home", DSE_JAVA_HOME=str(_fake_java(tmp_path, "11.0.2")))
    proc = run_dse(env, "doctor", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17+ is required, found Java 11" in lines[0] and "fix:" in lines[0]


def test_java_1_8_style_version_is_read_as_8(tmp_path):
    env = platform_env_for(tmp_path / "home", DSE_JAVA_HOME=str(_fake_java(tmp_path, "1.8.0_292")))
    proc = run_dse(env, "doctor", timeout=60)
    assert proc.returncode == 2 and "found Java 8" in proc.stderr


def test_missing_maven_names_the_install(tmp_path):
    env = platform_env_for(tmp_path / "home", DSE_MAVEN="mvn-does-not-exist", DSE_JARS_DIR=str(tmp_path / "jars"))
    proc = run_dse(env, "jars", timeout=60)
    assert proc.returncode == 2
    assert "Maven ('mvn-does-not-exist') was not found" in proc.stderr and "apt-get install maven" in proc.stderr


def test_half_written_jar_cache_is_noticed_and_resolved_again(tmp_path):
    jars = tmp_path / "jars"
    (jars / "kafka").mkdir(parents=True)
    (jars / "kafka" / "kafka-clients-4.4.0.jar").write_bytes(b"PK\x03\x04 truncated")
    env = platform_env_for(tmp_path / "home", DSE_JARS_DIR=str(jars))
    proc = run_dse(env, "jars", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "incomplete" in proc.stdout and "resolving it again" in proc.stdout
    assert (jars / "kafka" / ".complete").exists() and (jars / "spark" / ".complete").exists()
    assert (jars / "kafka" / "kafka-clients-4.4.0.jar").stat().st_size > 1_000_000
    # a second run trusts the complete cache and resolves nothing
    again = run_dse(env, "jars", timeout=120)
    assert again.returncode == 0 and "resolving" not in again.stdout


def test_health_checks_say_unhealthy_when_nothing_listens(tmp_path):
    env = platform_env_for(tmp_path / "home")
    s = settings_for(env)
    for check in (health.kafka_health, health.mlflow_health, health.airflow_health):
        ok, detail = check(s)
        assert not ok and detail


def test_make_names_a_missing_python_in_one_line():
    proc = subprocess.run(["make", "-s", "prereqs", "PYTHON=python3.99"], capture_output=True, text=True,
                          cwd=PROJECT_DIR)
    assert proc.returncode != 0
    assert "missing prerequisite: Python 3.11" in proc.stdout + proc.stderr


def test_kafkas_storage_tool_formats_a_cluster_id_starting_with_a_dash(tmp_path):
    """Any Kafka id (compose's KAFKA_CLUSTER_ID is the user's) reaches the StorageTool as a value, not an option."""
    settings = Settings(_env_file=None, home=tmp_path, DSE_JARS_DIR=get_settings().jars_dir, kafka_sasl=False)
    data = broker.data_dir(settings, 1)
    assert broker.format_config(settings, broker.write_config(settings, 1), data, "-AAAAAAAAAAAAAAAAAAAAA")
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (data / "meta.properties").read_text().splitlines()
