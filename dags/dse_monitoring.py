"""Daily monitoring: feature drift (PSI), live accuracy per model version against the baselines, dead letters.

Thresholds are settings (DSE_MONITOR_*). A crossed threshold is logged, recorded as an
``alert`` model event, and fails the run so it shows red in the UI.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import START, default_args

with DAG(
    dag_id="dse_monitoring",
    schedule=get_settings().monitoring_schedule,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["dse", "monitoring"],
    doc_md=__doc__,
):

    @task
    def measure() -> dict:
        from dse_platform.monitoring import daily

        return daily.run(hooks.platform_settings()).as_dict()

    @task(retries=0)
    def check_thresholds(report: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        if report["alerts"]:
            raise AirflowFailException("; ".join(report["alerts"]))

    check_thresholds(measure())
