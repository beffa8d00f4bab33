"""Sensors of the project DAGs."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator


class PredictionsSensor(BaseSensorOperator):
    """Succeeds once the serving DB holds predictions scored since the DAG run started.

    The streaming DAG's health check: a run whose job stored no prediction fails
    (the sensor's timeout), instead of reporting success on an idle pipeline.
    """

    def __init__(self, *, min_predictions: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_predictions = min_predictions

    def poke(self, context: Any) -> bool:
        from dse_platform.orchestration import streaming
        from dse_platform.orchestration.airflow import hooks

        since = context["dag_run"].start_date or context["dag_run"].logical_date
        count = streaming.predictions_since(hooks.platform_settings(), since)
        self.log.info("%d predictions scored since %s (need %d)", count, since, self.min_predictions)
        return count >= self.min_predictions
