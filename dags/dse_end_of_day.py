"""DSE's official end-of-day bars after each session: the day-end archive -> the bars topic.

Ticks are never final bars, so without this a live day never resolves its outcomes. Runs after the
14:30 close (Asia/Dhaka, Sunday-Thursday; DSE_EOD_SCHEDULE) for the run's Asia/Dhaka date; on a
closure day DSE shows the previous session, nothing is published and the run succeeds. A re-run
publishes the same bars again, which the stream recognises as re-sent.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import dhaka_cron, project_dag, run_day

with project_dag(
    "dse_end_of_day", dhaka_cron(get_settings().eod_schedule), tags=["dse", "live"], doc_md=__doc__,
):

    @task(execution_timeout=dt.timedelta(minutes=30))
    def publish_official_bars(logical_date=None, data_interval_end=None) -> dict[str, int | str]:
        from dse_platform.streams import end_of_day

        result = end_of_day.publish_day(hooks.platform_settings(), run_day(logical_date, data_interval_end))
        return {"day": str(result.day), "page_date": str(result.page_date), "published": result.published,
                "untraded": result.untraded, "unknown": result.unknown}

    publish_official_bars()
