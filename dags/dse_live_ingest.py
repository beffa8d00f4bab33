"""Live DSE prices during each trading session: poll DSE's latest-share-price page and publish ticks.

Starts before the 10:00 open (Asia/Dhaka, Sunday-Thursday; DSE_LIVE_SCHEDULE), polls through
the session and ends after the 14:30 close; on a closure day it ends at once.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, task

from dse_platform.config import get_settings
from dse_platform.orchestration.airflow import hooks
from dse_platform.orchestration.airflow.defaults import dhaka_cron, project_dag

with project_dag(
    "dse_live_ingest", dhaka_cron(get_settings().live_schedule), tags=["dse", "live"], doc_md=__doc__,
    params={
        "max_polls": Param(None, type=["null", "integer"], minimum=1, title="Stop after this many polls"),
        "max_wait_s": Param(1800, type="integer", minimum=0, title="Longest wait for the open before ending"),
    },
):

    @task(execution_timeout=dt.timedelta(hours=6))
    def live_session(params=None) -> None:
        from dse_platform.streams import live

        live.run(hooks.platform_settings(), until_close=True, max_polls=params["max_polls"],
                 max_wait_s=params["max_wait_s"])

    live_session()
