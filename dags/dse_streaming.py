"""Start the pipeline from the UI: ensure topics, replay a date range, submit the streaming job, check predictions.

Trigger it with params (date range, symbols, replay speed, trigger mode, run time limit).
The job is submitted by the Spark provider's SparkSubmitOperator through the
`spark_default` connection (local master by default; a spark:// master by configuring
the connection). With the available-now trigger or a run time limit the run ends by itself.
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow.defaults import project_dag
from dse_platform.orchestration.airflow.sensors import PredictionsSensor
from dse_platform.runtime import spark

settings = get_settings()

with project_dag(
    "dse_streaming", None, tags=["dse", "streaming"], doc_md=__doc__, retries=0,
    params={
        "start": Param("2025-08-01", type="string", format="date", title="First trading date to replay"),
        "end": Param("2025-08-25", type="string", format="date", title="Last trading date to replay"),
        "symbols": Param([], type="array", items={"type": "string"}, title="Trading codes (empty: all)"),
        "speed": Param(0, type="number", minimum=0, title="Replay speed in trading days/s (0: as fast as possible)"),
        "trigger": Param("available-now", type="string", enum=["available-now", "processing-time"],
                         title="Bounded run, or a service for the run time limit"),
        "run_time_limit_s": Param(0, type="integer", minimum=0, title="Stop the job after this many seconds"),
    },
):

    @task
    def check_params(params=None) -> dict:
        from dse_platform.orchestration import streaming

        return streaming.check_stream_params(get_settings(), dict(params))

    @task
    def preflight() -> dict:
        from dse_platform.orchestration.airflow import hooks

        return hooks.spark_preflight(get_settings())

    @task
    def ensure_topics() -> list[str]:
        from dse_platform.streams import kafka_io

        return kafka_io.ensure_topics(get_settings())

    @task
    def replay(checked: dict) -> int:
        import datetime as dt

        from dse_platform.streams import replay as replay_mod

        result = replay_mod.replay(get_settings(), dt.date.fromisoformat(checked["start"]),
                                   dt.date.fromisoformat(checked["end"]), checked["symbols"] or None,
                                   checked["speed"] or None, progress=False)
        return result.bars

    checked = check_params()
    ready = preflight()
    stream = SparkSubmitOperator(
        task_id="stream_predict",
        conn_id="spark_default",
        application=str(spark.application(settings)),
        name=spark.APP_NAME,
        jars="{{ ti.xcom_pull(task_ids='preflight')['jars'] }}",
        application_args=["--trigger", "{{ params.trigger }}", "--timeout", "{{ params.run_time_limit_s }}"],
        # the confs every launch of the job shares; the jars come from preflight (resolved at run time, not parse)
        conf=spark.spark_conf(settings, with_jars=False),
        env_vars=spark.spark_env(settings),
    )
    health = PredictionsSensor(task_id="predictions_arrived", start="{{ params.start }}", end="{{ params.end }}",
                               symbols="{{ params.symbols | join(',') }}", poke_interval=10, timeout=300,
                               mode="reschedule")
    [checked, ready] >> ensure_topics() >> replay(checked) >> stream >> health
