"""The streaming job's spark-submit command line and Spark confs (runtime/spark.py)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from dse_platform.errors import PlatformError
from dse_platform.runtime import spark
from dse_platform.runtime.jars import MARKER, jar_set_dir


def _confs(argv: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for flag, value in itertools.pairwise(argv) if flag == "--conf")


def test_submit_command_has_master_jars_confs_and_application(make_settings, fake_jars):
    settings = make_settings(host="127.0.0.9", DSE_SPARK_MASTER="local[2]", spark_ui_port=4999,
                             stream_shuffle_partitions=3)
    jars = fake_jars(settings)
    argv = spark.submit_command(settings, "--trigger", "available-now")
    assert argv[0] == str(Path(sys.executable).parent / "spark-submit")
    assert argv[argv.index("--master") + 1] == "local[2]"
    assert argv[argv.index("--jars") + 1] == ",".join(str(p) for p in sorted(jars))
    assert argv[-3:] == [str(settings.project_dir / "jobs" / "stream_predict.py"), "--trigger", "available-now"]
    confs = _confs(argv)
    assert confs == spark.spark_conf(settings, with_jars=False)
    assert confs["spark.ui.port"] == "4999"
    assert confs["spark.ui.killEnabled"] == "false"
    assert confs["spark.sql.shuffle.partitions"] == "3"
    assert confs["spark.driver.bindAddress"] == confs["spark.driver.host"] == "127.0.0.9"
    assert confs["spark.pyspark.python"] == confs["spark.pyspark.driver.python"] == sys.executable
    assert confs["spark.sql.streaming.stateStore.providerClass"].endswith("RocksDBStateStoreProvider")
    assert spark.spark_env(settings) == {"PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.9"}


def test_session_conf_carries_the_jars(make_settings, fake_jars):
    settings = make_settings()
    jars = fake_jars(settings)
    assert spark.spark_conf(settings)["spark.jars"] == ",".join(str(p) for p in sorted(jars))


def test_a_cluster_master_keeps_spark_default_driver_address(make_settings):
    settings = make_settings(DSE_SPARK_MASTER="spark://spark-master:7077")
    conf = spark.spark_conf(settings, with_jars=False)  # no jars needed where they come separately
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    assert "SPARK_LOCAL_IP" not in spark.spark_env(settings)


def test_an_incomplete_jar_set_is_refused(make_settings, fake_jars):
    settings = make_settings()
    fake_jars(settings)
    (jar_set_dir(settings, "spark") / MARKER).unlink()  # an interrupted download leaves no marker
    with pytest.raises(PlatformError, match="dse jars"):
        spark.submit_command(settings)
