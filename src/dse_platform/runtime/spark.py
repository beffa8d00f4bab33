"""The one place that builds the streaming job's Spark settings and its spark-submit command line.

``dse stream``, the supervised background stream, the Airflow DAG's
SparkSubmitOperator and the in-process SparkSession all take their confs from
:func:`spark_conf`, so a job started any of these ways runs with the same
state store, partitions, Python and UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.runtime import jars

APP_NAME = "dse-stream-predict"
JARS_CONF = "spark.jars"


def is_local(master: str) -> bool:
    """True for ``local``, ``local[N]``, ``local[*]``: driver and executors share this machine."""
    return master.startswith("local")


def on_this_machine(settings: Settings) -> bool:
    """Driver and executors all run here: local mode, or the standalone cluster `dse up` runs (DSE_SPARK_WORKERS)."""
    return is_local(settings.spark_master) or settings.local_spark_cluster


def spark_conf(settings: Settings, *, with_jars: bool = True) -> dict[str, str]:
    """The job's Spark confs; ``with_jars=False`` where the jars come separately (the DAG passes them by XCom).

    With a local master or the local cluster the driver binds to DSE_HOST like every other
    service; with another cluster's master it keeps Spark's defaults so executors elsewhere can reach it.
    """
    conf = {
        "spark.ui.port": str(settings.spark_ui_port),
        # a stray click in the UI must not kill the long-running job
        "spark.ui.killEnabled": "false",
        "spark.sql.shuffle.partitions": str(settings.stream_shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        # workers otherwise start `python3` from PATH, which lacks our packages
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if on_this_machine(settings):
        conf |= {"spark.driver.bindAddress": settings.host, "spark.driver.host": settings.host}
    if with_jars:
        conf[JARS_CONF] = jars.jar_list(settings, "spark")
    return conf


def spark_env(settings: Settings) -> dict[str, str]:
    """Environment of a process that starts Spark's JVM.

    The UI's address is no conf: Spark binds it to SPARK_LOCAL_IP (else 0.0.0.0).
    """
    env = {"PYSPARK_PYTHON": sys.executable}
    if on_this_machine(settings):
        env["SPARK_LOCAL_IP"] = settings.host
    return env


def application(settings: Settings) -> Path:
    """The job's spark-submit entry point."""
    return settings.project_dir / "jobs" / "stream_predict.py"


def submit_command(settings: Settings, *job_args: str) -> list[str]:
    """The spark-submit command line of the job (run it with :func:`spark_env` in its environment)."""
    conf = spark_conf(settings)
    argv = [str(Path(sys.executable).parent / "spark-submit"), "--master", settings.spark_master,
            "--name", APP_NAME, "--jars", conf.pop(JARS_CONF)]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, str(application(settings)), *job_args]
