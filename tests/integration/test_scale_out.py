"""Scale-out as local processes: `dse up` with three KRaft brokers and a two-worker Spark standalone cluster.

The cluster shares the session platform's MLflow and PostgreSQL and is started once for the
module. A few instruments over eight months (about 60 sessions of lookback before the first
score) keep each run short. One undisturbed bounded run on the cluster is the reference; then
a broker is killed -9 under a live replay with the job running, and a Spark worker is killed -9
under a bounded run: both must end with the reference's tables.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from pydantic import SecretStr

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.model import gate, training
from dse_platform.runtime import health, supervisor
from dse_platform.streams import kafka_io, replay
from tests.support.platform import (
    DSE,
    fresh_database,
    platform_env_for,
    run_dse,
    scale_out_env,
    service_home,
    settings_for,
    wait_for,
)
from tests.support.streaming import bounded_run, count, job_env, tables

pytestmark = [pytest.mark.services, pytest.mark.slow]

START, END = dt.date(2024, 1, 1), dt.date(2024, 8, 31)
COMPARED = ("predictions", "prediction_outcomes", "bars")


@pytest.fixture(scope="module")
def symbols(shipped_store) -> list[str]:
    _, target = shipped_store
    bars = store.read_bars(target, start=START, end=END, columns=["symbol", "date"])
    counts = bars.groupby("symbol").size()
    return sorted(counts[counts >= counts.max() - 2].index)[::25][:4]


@pytest.fixture(scope="module")
def served(platform, shipped_store, symbols) -> Settings:
    """One logistic-regression version of a fresh model name, trained before the range, in production."""
    _, target = shipped_store
    cfg = platform.model_copy(update={"store_dir_override": target, "model_name": f"scale-{uuid.uuid4().hex[:8]}",
                                      "train_folds": 2, "train_test_sessions": 60, "train_recipe": "logreg"})
    gate.promote(cfg, training.train(cfg, symbols=symbols, cutoff=START - dt.timedelta(days=1)).version, force=True)
    return cfg


@pytest.fixture(scope="module")
def cluster_env(platform, platform_env) -> dict[str, str]:
    """`dse up` of three brokers and a master with two workers (MLflow and the databases are the session's)."""
    scale = scale_out_env(brokers=3, workers=2)
    env = platform_env_for(service_home("scale"), **scale, DSE_AIRFLOW_ENABLED="false", DSE_DB_BACKEND="sqlite",
                           DSE_MLFLOW_TRACKING_URI=platform.tracking_uri)
    proc = run_dse(env, "up")
    if proc.returncode != 0:
        run_dse(env, "down")
        pytest.fail(f"dse up of the cluster failed:\n{proc.stdout}\n{proc.stderr}")
    # three brokers authenticate clients (SASL/SCRAM): the job and replays run with the platform's home,
    # so they get the cluster's generated login by configuration, as any client of an existing cluster does
    login = credentials.read(credentials.kafka_file(Path(env["DSE_HOME"])))
    assert login, "dse up of three brokers did not generate their SCRAM login"
    yield {**platform_env, **scale, "cluster_home": env["DSE_HOME"], "DSE_KAFKA_PASSWORD": login["password"]}
    run_dse(env, "down")
    shutil.rmtree(env["DSE_HOME"], ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(cluster_env) -> Settings:
    """The cluster's settings (its own home, where supervisor's socket is)."""
    return settings_for({**cluster_env, "DSE_HOME": cluster_env["cluster_home"]})


def new_topic(cluster: Settings, shipped_store) -> dict:
    """A fresh bars topic (and its ticks topic) on the cluster, created as the platform creates topics."""
    _, target = shipped_store
    name = f"bars-{uuid.uuid4().hex[:8]}"
    cfg = cluster.model_copy(update={"store_dir_override": target, "bars_topic": name, "ticks_topic": f"ticks-{name}"})
    kafka_io.ensure_topics(cfg, [cfg.bars_topic, cfg.ticks_topic])
    return {"cfg": cfg}


def describe(cluster: Settings, topic: str) -> list[dict]:
    admin = KafkaAdminClient(**kafka_io.client_config(cluster), client_id="dse-test")
    try:
        return admin.describe_topics([topic])[0]["partitions"]
    finally:
        admin.close()


@pytest.fixture(scope="module")
def reference(platform, cluster_env, cluster, served, shipped_store, symbols) -> dict:
    """The range replayed undisturbed, then one undisturbed bounded run of it on the cluster."""
    topic = new_topic(cluster, shipped_store)
    replay.replay(topic["cfg"], START, END, symbols, progress=False, echo=lambda _: None)
    url = fresh_database(platform)
    started = time.monotonic()
    bounded_run(job_env(cluster_env, served, topic, DSE_DB_URL=url))
    return {"topic": topic, "tables": tables(url), "seconds": time.monotonic() - started}


def assert_same_tables(url: str, reference: dict) -> None:
    got = tables(url)
    for name in COMPARED:
        pd.testing.assert_frame_equal(got[name], reference["tables"][name], check_exact=True, obj=name)


def test_the_cluster_is_configured_end_to_end(cluster, reference):
    """All brokers in the bootstrap list, topics with three replicas and min.insync.replicas 2, all six healthy."""
    assert cluster.bootstrap_servers.count(",") == 2
    topic = reference["topic"]["cfg"].bars_topic
    partitions = describe(cluster, topic)
    assert {len(p["replica_nodes"]) for p in partitions} == {3}
    admin = KafkaAdminClient(**kafka_io.client_config(cluster), client_id="dse-test")
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    (configs,) = (by_name[topic] for by_name in described.values())
    assert configs["min.insync.replicas"]["value"] == "2"
    rows = {row["service"]: row for row in supervisor.status(cluster)}
    for name in ("kafka-1", "kafka-2", "kafka-3", "spark-master", "spark-worker-1", "spark-worker-2"):
        assert rows[name]["health"] == "healthy", rows[name]
    assert len(reference["tables"]["predictions"]) > 100


def test_the_cluster_refuses_clients_without_its_login(cluster, reference):
    """SASL/SCRAM is on for three brokers: no login, or a wrong password, gets no metadata; the right login does."""
    topic = reference["topic"]["cfg"].bars_topic
    wrong = cluster.model_copy(update={"kafka_password": SecretStr("not-the-password")})
    for client in ({"bootstrap_servers": cluster.bootstrap_servers},
                   kafka_io.client_config(wrong)):
        with pytest.raises((KafkaError, OSError)):
            admin = KafkaAdminClient(**client, client_id="dse-test-anonymous", request_timeout_ms=5000,
                                     bootstrap_timeout_ms=10000)
            try:
                admin.describe_topics([topic])
            finally:
                admin.close()
    assert describe(cluster, topic), "the platform's own login must still read the topic"


def _kill_9(cluster: Settings, name: str) -> int:
    """kill -9 a supervised program's whole process group (a worker's executors die with it); returns the old pid."""
    pid = supervisor.rpc(cluster).supervisor.getProcessInfo(name)["pid"]
    os.killpg(pid, signal.SIGKILL)
    return pid


def _restarted(cluster: Settings, name: str, old_pid: int, check) -> None:
    """supervisor brings the program back under a new pid and it passes its health check again."""
    server = supervisor.rpc(cluster).supervisor
    wait_for(lambda: server.getProcessInfo(name)["pid"] not in (0, old_pid), 60, f"{name} restarted")
    wait_for(lambda: check(cluster)[0], 180, f"{name} healthy again", every_s=1)


def test_a_broker_killed_under_a_live_replay_loses_and_duplicates_nothing(
        platform, cluster_env, cluster, served, shipped_store, symbols, reference):
    started = time.monotonic()
    topic = new_topic(cluster, shipped_store)
    url = fresh_database(platform)
    # small micro-batches (default 50,000, used by the reference run) so the kill lands between many batches
    env = job_env(cluster_env, served, topic, DSE_DB_URL=url, DSE_STREAM_MAX_OFFSETS="200")
    log = (cluster.home / f"broker-loss-{topic['cfg'].bars_topic}.log").open("w")
    job = subprocess.Popen([DSE, "stream"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    failures: list[BaseException] = []

    def send() -> None:
        try:  # paced, so the broker dies in the middle: about 170 sessions at 10 a second
            replay.replay(topic["cfg"], START, END, symbols, speed=10, progress=False, echo=lambda _: None)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    sender = threading.Thread(target=send)
    try:
        sender.start()
        total_bars = len(replay.load_bars(topic["cfg"], START, END, symbols))
        wait_for(lambda: kafka_io.records_in(cluster, topic["cfg"].bars_topic) >= 0.3 * total_bars, 120,
                 "30% of the replay")
        old = _kill_9(cluster, "kafka-2")
        sender.join(300)
        assert not sender.is_alive() and not failures, failures
        _restarted(cluster, "kafka-2", old, lambda s: health.kafka_health(s, 2))
        total = len(reference["tables"]["predictions"])
        wait_for(lambda: count(url, "predictions") >= total, 300, "every prediction of the range")
        assert job.poll() is None, "the job must keep running through the broker's loss"
        wait_for(lambda: all(len(p["isr_nodes"]) == 3 for p in describe(cluster, topic["cfg"].bars_topic)), 120,
                 "the restarted broker back in every partition's ISR")
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
        log.close()
    assert_same_tables(url, reference)
    print(f"broker loss: {time.monotonic() - started:.0f}s")


def test_a_worker_killed_under_a_bounded_run_gives_the_same_predictions(
        platform, cluster_env, cluster, served, reference):
    started = time.monotonic()
    url = fresh_database(platform)
    # small micro-batches (default 50,000, used by the reference run) so the kill lands in the middle of the run
    env = job_env(cluster_env, served, reference["topic"], DSE_DB_URL=url, DSE_STREAM_MAX_OFFSETS="100")
    total = len(reference["tables"]["predictions"])
    killed: list[int] = []

    def kill_when_a_quarter_is_scored() -> None:
        wait_for(lambda: count(url, "predictions") >= 0.25 * total, 300, "a quarter of the predictions")
        killed.append(_kill_9(cluster, "spark-worker-1"))

    killer = threading.Thread(target=kill_when_a_quarter_is_scored)
    killer.start()
    bounded_run(env, timeout=600)
    killer.join(5)
    assert killed, "the worker was not killed before the run ended: make the run longer"
    assert count(url, "predictions") == total
    assert_same_tables(url, reference)
    _restarted(cluster, "spark-worker-1", killed[0], lambda s: health.spark_worker_health(s, 1))
    print(f"worker loss: {time.monotonic() - started:.0f}s (reference run {reference['seconds']:.0f}s)")
