"""Daily monitoring of one session: feature drift (PSI), live per-date AUC vs ex-ante baselines, dead letters.

The run covers the last trading session on or before its logical date (Asia/Dhaka), so a
rerun gives the same report. Thresholds are settings (DSE_MONITOR_*). A crossed threshold is
logged, recorded once per session and kind as an ``alert`` model event, and fails the run.
"""

from __future__ import annotations

from airflow.sdk import task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import dhaka_cron, project_dag, run_day

with project_dag(
    "dse_monitoring", dhaka_cron(get_settings().monitoring_schedule), tags=["dse", "monitoring"], doc_md=__doc__,
):

    @task
    def measure(logical_date=None, data_interval_end=None) -> dict:
        from dse_platform.monitoring import daily

        return daily.run(hooks.platform_settings(), run_day(logical_date, data_interval_end)).as_dict()

    @task(retries=0)
    def check_thresholds(report: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        if report["alerts"]:
            raise AirflowFailException("; ".join(report["alerts"]))

    check_thresholds(measure())
