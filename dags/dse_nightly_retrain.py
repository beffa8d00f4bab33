"""Nightly retrain after the DSE close: fold final streamed bars, validate the store, train, validate, deploy, report.

Sunday-Thursday after the 14:30 close (Asia/Dhaka; DSE_RETRAIN_SCHEDULE). Idempotent per
logical date: folding skips bars the store has; train tags its run and version with the
logical date and a retry reuses that version; validate runs the gate (decision only, noting
where the alias points); deploy moves the alias only if it still points there and records
the decision once per date; a run with no new data holds the current model without training.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import dhaka_cron, project_dag, run_day

with project_dag(
    "dse_nightly_retrain", dhaka_cron(get_settings().retrain_schedule), tags=["dse", "model", "nightly"],
    doc_md=__doc__,
    params={"dry_run": Param(False, type="boolean", title="Dry run: say what the gate would do, move nothing")},
):

    @task
    def fold_streamed_bars(logical_date=None, data_interval_end=None) -> dict:
        from dse_platform.orchestration import fold

        return fold.fold_streamed_bars(hooks.platform_settings(), run_day(logical_date, data_interval_end))

    @task
    def validate_store(folded: dict) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.validate_store(hooks.platform_settings())

    @task
    def train(checked: dict, logical_date=None, data_interval_end=None, run_id=None) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.train(hooks.platform_settings(), run_day(logical_date, data_interval_end), run_id)

    @task
    def validate(trained: dict) -> dict | None:
        from dse_platform.orchestration import retrain

        return retrain.validate(hooks.platform_settings(), trained)

    @task
    def deploy(trained: dict, decision: dict | None, logical_date=None, data_interval_end=None,
               params=None) -> dict:
        from dse_platform.orchestration import retrain

        return retrain.deploy(hooks.platform_settings(), run_day(logical_date, data_interval_end), trained, decision,
                              dry_run=params["dry_run"])

    @task
    def publish_report(folded: dict, checked: dict, trained: dict, deployed: dict, logical_date=None,
                       data_interval_end=None, dag_run=None) -> str:
        from dse_platform.orchestration import retrain

        text = retrain.report_text(run_day(logical_date, data_interval_end), folded, checked, trained, deployed)
        print(text)
        retrain.publish_report(hooks.platform_settings(), text, trained, dag_run.dag_id, dag_run.run_id)
        return text

    folded = fold_streamed_bars()
    checked = validate_store(folded)
    trained = train(checked)
    publish_report(folded, checked, trained, deploy(trained, validate(trained)))
