"""The local Spark standalone cluster's commands and where the job and Airflow find it (runtime/spark_cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from dse_platform.runtime import airflow_env, spark, spark_cluster
from dse_platform.runtime.services import services


def test_master_and_workers_come_from_pysparks_launcher_on_the_configured_host(make_settings):
    settings = make_settings(host="127.0.0.9", spark_workers=2, spark_master_port=17077, spark_master_ui_port=18090,
                             spark_worker_cores=2, spark_worker_memory="2g")
    launcher = str(Path(sys.executable).parent / "spark-class")
    assert spark_cluster.master_command(settings) == [
        launcher, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.9", "--port", "17077",
        "--webui-port", "18090"]
    assert spark_cluster.worker_command(settings, 2) == [
        launcher, "org.apache.spark.deploy.worker.Worker", "spark://127.0.0.9:17077", "--host", "127.0.0.9",
        "--port", "17079", "--webui-port", "18092", "--cores", "2", "--memory", "2g",
        "--work-dir", str(settings.home / "spark" / "worker-2")]
    # the UIs and RPC bind to DSE_HOST only through SPARK_LOCAL_IP; executors run our interpreter
    assert spark_cluster.environment(settings)["SPARK_LOCAL_IP"] == "127.0.0.9"
    assert spark_cluster.environment(settings)["PYSPARK_PYTHON"] == sys.executable


def test_one_program_each_and_the_job_and_airflow_pointed_at_the_master(make_settings, fake_jars):
    settings = make_settings(spark_workers=2, spark_master_port=17077, airflow_enabled=False)
    by_name = {svc.name: svc for svc in services(settings)}
    assert {"spark-master", "spark-worker-1", "spark-worker-2"} <= set(by_name)
    assert by_name["spark-worker-1"].ports == [17078, settings.spark_master_ui_port + 1]
    fake_jars(settings)
    argv = spark.submit_command(settings)
    assert argv[argv.index("--master") + 1] == "spark://127.0.0.1:17077"
    assert airflow_env.airflow_environment(settings)["AIRFLOW_CONN_SPARK_DEFAULT"].count("spark://127.0.0.1:17077")
    # driver and executors share this machine: the driver binds to DSE_HOST like local mode
    assert spark.spark_conf(settings, with_jars=False)["spark.driver.host"] == settings.host


def test_no_workers_is_local_mode_and_an_explicit_master_wins(make_settings):
    assert make_settings().spark_master == "local[*]"
    assert not any(s.name.startswith("spark-") for s in services(make_settings()))
    settings = make_settings(spark_workers=2, DSE_SPARK_MASTER="spark://elsewhere:7077")
    assert settings.spark_master == "spark://elsewhere:7077"
    assert not any(s.name.startswith("spark-") for s in services(settings))
