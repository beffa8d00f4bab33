"""The local Spark standalone cluster: a master and ``DSE_SPARK_WORKERS`` workers as supervised programs.

Started from PySpark's own launch script (``spark-class``), as the compose file's
``spark-master`` and ``spark-worker`` services are, so the job sees the same kind of
cluster locally as in the deployment: executors in their own JVMs that can be lost
and replaced while the driver keeps the query. Master and worker n listen on
DSE_SPARK_MASTER_PORT (+ n) and DSE_SPARK_MASTER_UI_PORT (+ n), all on DSE_HOST.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dse_platform.config import Settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_class() -> str:
    """PySpark's launcher of a Spark JVM class, installed beside the interpreter."""
    return str(Path(sys.executable).parent / "spark-class")


def workers(settings: Settings) -> list[int]:
    """The local workers' numbers, 1..N."""
    return list(range(1, settings.spark_workers + 1))


def worker_port(settings: Settings, worker: int) -> int:
    return settings.spark_master_port + worker


def worker_ui_port(settings: Settings, worker: int) -> int:
    return settings.spark_master_ui_port + worker


def master_ui_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.spark_master_ui_port}"


def work_dir(settings: Settings, worker: int) -> Path:
    """Where a worker keeps its executors' folders and logs."""
    return settings.home / "spark" / f"worker-{worker}"


def master_command(settings: Settings) -> list[str]:
    return [spark_class(), MASTER_CLASS, "--host", settings.host, "--port", str(settings.spark_master_port),
            "--webui-port", str(settings.spark_master_ui_port)]


def worker_command(settings: Settings, worker: int) -> list[str]:
    """A worker offering DSE_SPARK_WORKER_CORES and _MEMORY to executors (not the whole machine, Spark's default)."""
    return [spark_class(), WORKER_CLASS, settings.spark_master, "--host", settings.host,
            "--port", str(worker_port(settings, worker)), "--webui-port", str(worker_ui_port(settings, worker)),
            "--cores", str(settings.spark_worker_cores), "--memory", settings.spark_worker_memory,
            "--work-dir", str(work_dir(settings, worker))]


def environment(settings: Settings) -> dict[str, str]:
    """Master's and workers' environment: RPC and web UIs bound to DSE_HOST, executors on our interpreter.

    The master's REST submission server is off: nothing submits through it, and it would hold port 6066.
    """
    return {"SPARK_LOCAL_IP": settings.host, "PYSPARK_PYTHON": sys.executable, "SPARK_DAEMON_MEMORY": "512m",
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
