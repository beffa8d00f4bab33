"""The one place that builds the spark-submit command line of the streaming job."""

from __future__ import annotations

from dse_platform.config import Settings
from dse_platform.runtime import jars


def submit_command(settings: Settings, *job_args: str) -> list[str]:
    """The spark-submit command line of the job (what `dse stream` runs)."""
    import sys
    from pathlib import Path

    return [str(Path(sys.executable).parent / "spark-submit"), "--master", settings.spark_master,
            "--jars", jars.jar_list(settings, "spark"), "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", f"spark.pyspark.driver.python={sys.executable}",
            str(settings.project_dir / "jobs" / "stream_predict.py"), *job_args]
