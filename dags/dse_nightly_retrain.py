"""Nightly retrain after the DSE close: fold the day's streamed bars into the store, validate, train, gate, report.

Sunday-Thursday after the 14:30 close (Asia/Dhaka; DSE_RETRAIN_SCHEDULE). Idempotent per
logical date: folding skips bars the store has, training is cut off at the logical date,
and a run with no new data holds the current model without training.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import START, default_args

with DAG(
    dag_id="dse_nightly_retrain",
    schedule=get_settings().retrain_schedule,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["dse", "model", "nightly"],
    doc_md=__doc__,
):

    @task
    def fold_streamed_bars(logical_date=None) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.fold_streamed_bars(hooks.platform_settings(), logical_date.in_timezone(START.tz).date())

    @task
    def validate_store(folded: dict) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.validate_store(hooks.platform_settings())

    @task
    def train_and_gate(checked: dict, logical_date=None) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.retrain(hooks.platform_settings(), logical_date.in_timezone(START.tz).date())

    @task
    def publish_report(folded: dict, checked: dict, outcome: dict, logical_date=None, dag_run=None) -> str:
        from dse_platform.orchestration import retrain

        text = retrain.report_text(logical_date.in_timezone(START.tz).date(), folded, checked, outcome)
        print(text)
        retrain.publish_report(hooks.platform_settings(), text, outcome, dag_run.dag_id, dag_run.run_id)
        return text

    folded = fold_streamed_bars()
    checked = validate_store(folded)
    publish_report(folded, checked, train_and_gate(checked))
