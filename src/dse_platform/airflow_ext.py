"""Airflow pieces the DAGs share: default arguments and the predictions sensor.

Imported by DAG files at parse time, so it stays light: heavy modules load inside tasks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from airflow.sdk import BaseSensorOperator

DHAKA = pendulum.timezone("Asia/Dhaka")
#: a fixed start in the past; with catchup off, a late-enabled DAG runs only its latest interval
START = pendulum.datetime(2025, 1, 1, tz=DHAKA)
OWNER = "dse-platform"


def default_args(retries: int = 2) -> dict[str, Any]:
    """Retries with exponential backoff for every task (transient broker/registry hiccups)."""
    return {"owner": OWNER, "retries": retries, "retry_delay": dt.timedelta(minutes=1),
            "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=15)}


class PredictionsSensor(BaseSensorOperator):
    """Succeeds once the serving DB holds predictions scored since the DAG run started.

    The streaming DAG's health check: a run whose job stored no prediction fails
    (the sensor's timeout), instead of reporting success on an idle pipeline.
    """

    def __init__(self, *, min_predictions: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_predictions = min_predictions

    def poke(self, context: Any) -> bool:
        from dse_platform import orchestration
        from dse_platform.config import get_settings

        since = context["dag_run"].start_date or context["dag_run"].logical_date
        count = orchestration.predictions_since(get_settings(), since)
        self.log.info("%d predictions scored since %s (need %d)", count, since, self.min_predictions)
        return count >= self.min_predictions
