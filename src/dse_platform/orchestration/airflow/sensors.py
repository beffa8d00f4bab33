"""Sensors of the project DAGs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator


class PredictionsSensor(BaseSensorOperator):
    """Succeeds once the serving DB holds predictions for the replayed range (and symbols).

    The streaming DAG's health check: a run whose job left the range without predictions fails
    (the sensor's timeout), instead of reporting success on an idle pipeline. It asks for
    predictions dated in the range, not scored since the run started: re-running a range already
    processed replays bars the job counts as re-sent and scores nothing new, and is healthy.
    Success needs predictions on the last session of the range the store has bars for (the job
    got to the end of what was replayed) and at least ``min_predictions`` in the range.
    """

    template_fields: Sequence[str] = ("start", "end", "symbols")

    def __init__(self, *, start: str, end: str, symbols: str | list[str] = "", min_predictions: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.end, self.symbols = start, end, symbols
        self.min_predictions = min_predictions

    def poke(self, context: Any) -> bool:
        from dse_platform.orchestration import streaming
        from dse_platform.orchestration.airflow import hooks

        start, end = dt.date.fromisoformat(str(self.start)), dt.date.fromisoformat(str(self.end))
        symbols = streaming.normalise_symbols(self.symbols)
        found = streaming.range_predictions(hooks.platform_settings(), start, end, symbols)
        self.log.info("%d predictions dated %s..%s%s, %d on its last session %s (need %d, and one on %s)",
                      found.count, start, end, f" for {len(symbols)} symbols" if symbols else "",
                      found.on_last_session, found.last_session, self.min_predictions, found.last_session)
        return found.ready(self.min_predictions)
