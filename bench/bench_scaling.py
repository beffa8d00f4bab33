"""Scaling: the full streaming job's sustained records/s with 1 and 2 Spark workers, on 1 and 3 Kafka brokers.

For each broker count, `dse up` starts a cluster of its own under var/bench/scale-<n> (n KRaft brokers, SASL/SCRAM
at three as the scale-out profile has it; a standalone Spark master with two one-core workers; no Airflow, no
database server of its own), sharing the bench platform's MLflow, model and PostgreSQL as `tests/integration/
test_scale_out.py` does. The job's own query then runs in this process against the cluster's master, as
bench_stream runs it: the same replayed range into fresh topics (replication min(3, brokers)), a fresh database,
production and challenger scored, sustained records/s over the micro-batches after the first. First with both
workers, then with worker 2 stopped (its executor gone). Beside each: the local[*] job on the bench platform's
single broker over the same range, measured in the same run. Full runs only: four cluster runs and two `dse up`
take longer than `make bench QUICK=1` allows. On a 2-core machine the workers share the cores the driver, the
brokers and PostgreSQL use, so the curve says what more processes cost here, not what more machines would give.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr

from dse_platform import credentials
from dse_platform.config import PROJECT_DIR, Settings, get_settings
from dse_platform.runtime import health, supervisor
from dse_platform.serving import job
from dse_platform.streams import replay

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import END, START, _fresh, full_job, sustained
from harness import DSE, Figure, platform_env

from tests.support.platform import free_port, scale_out_env, settings_for, wait_for

BROKERS = (1, 3)
WORKERS = 2
#: the QUICK stream range (~90k bars): a micro-batch of 50,000 warms the state, ~40,000 are counted
RANGE_START = START[True]
LOCAL = "local[*] job, bench platform's broker (no cluster)"


def _label(brokers: int, workers: int) -> str:
    return f"{workers} Spark worker(s), {brokers} broker(s)"


@contextlib.contextmanager
def cluster(settings: Settings, brokers: int) -> Iterator[tuple[Settings, Settings]]:
    """`dse up` of ``brokers`` brokers and a two-worker Spark cluster: (the job's settings, the cluster's own)."""
    home = PROJECT_DIR / "var" / "bench" / f"scale-{brokers}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    scale = scale_out_env(brokers, WORKERS)
    env = {**platform_env({"DSE_DASHBOARD_PORT": str(free_port())}), **scale, "DSE_HOME": str(home),
           "DSE_DB_BACKEND": "sqlite", "DSE_MLFLOW_TRACKING_URI": settings.tracking_uri}
    log = (home / "bench.log").open("a")
    try:
        up = subprocess.run([DSE, "up"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR, timeout=900)
        if up.returncode != 0:
            raise RuntimeError(f"bench_scaling: `dse up` of {brokers} broker(s) failed: see {home / 'bench.log'}")
        login = credentials.read(credentials.kafka_file(home)) or {}
        update = {"kafka_brokers": brokers, "kafka_port": int(scale["DSE_KAFKA_PORT"]),
                  "kafka_controller_port": int(scale["DSE_KAFKA_CONTROLLER_PORT"]), "spark_workers": WORKERS,
                  "spark_master_port": int(scale["DSE_SPARK_MASTER_PORT"]),
                  "spark_master_ui_port": int(scale["DSE_SPARK_MASTER_UI_PORT"])}
        if login.get("password"):  # three brokers authenticate clients: the job uses the cluster's login
            update["kafka_password"] = SecretStr(login["password"])
        yield settings.model_copy(update=update), settings_for(env)
    finally:
        subprocess.run([DSE, "down"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR, timeout=300)
        log.close()


def _sustained(cfg: Settings, app: str) -> float:
    """The full job over the replayed range on ``cfg``'s master, in a Spark session of its own."""
    fresh = _fresh(cfg)
    replay.replay(fresh, RANGE_START, END, progress=False, echo=lambda _: None)
    spark = job.spark_session(fresh, app)
    spark.sparkContext.setLogLevel("WARN")
    try:
        with tempfile.TemporaryDirectory() as folder:
            return sustained(full_job(spark, fresh, Path(folder)))
    finally:
        spark.stop()


def run(quick: bool) -> list[Figure]:
    """Sustained records/s for each (brokers, workers), each beside the local[*] job of the same run."""
    if quick:
        print("bench_scaling: skipped in QUICK runs (two clusters started, five runs of the job)")
        return []
    settings = get_settings()
    data = f"bars replayed {RANGE_START}..{END}, micro-batches of {settings.stream_max_offsets:,}, PostgreSQL"
    local = Figure("scaling", LOCAL, "records/s", data)
    local.add(_sustained(settings, "dse-bench-scaling-local"))
    figures = [local]
    for brokers in BROKERS:
        with cluster(settings, brokers) as (cfg, own):
            for workers in (WORKERS, 1):
                if workers < WORKERS:
                    supervisor.rpc(own).supervisor.stopProcess(f"spark-worker-{WORKERS}")
                    wait_for(lambda n=workers: f"{n} worker(s) alive" in health.spark_master_health(own)[1], 120,
                             f"the master to count {workers} worker(s)")
                figure = Figure("scaling", f"full job sustained: {_label(brokers, workers)}", "records/s", data,
                                ceiling=LOCAL, note="each worker offers 1 core and 1 GB")
                figure.add(_sustained(cfg, f"dse-bench-scaling-{brokers}b{workers}w"))
                figures.append(figure)
    return figures
