"""What every project DAG shares: the DAG's settings, default arguments, the timetable and the run's date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from airflow.sdk import DAG
from airflow.timetables.trigger import CronTriggerTimetable

DHAKA = pendulum.timezone("Asia/Dhaka")


OWNER = "dse-platform"


def default_args(retries: int = 2) -> dict[str, Any]:
    """Retries with exponential backoff for every task (transient broker/registry hiccups)."""
    return {"owner": OWNER, "retries": retries, "retry_delay": dt.timedelta(minutes=1),
            "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=15)}


def project_dag(dag_id: str, schedule: Any, *, tags: list[str], doc_md: str | None, retries: int = 2,
                params: dict[str, Any] | None = None) -> DAG:
    """A project DAG: no catchup, one active run, the shared default arguments.

    No start date: a freshly installed platform waits for each schedule's next moment (see `dhaka_cron`)
    instead of running every DAG's latest past moment at once beside `dse demo`'s own work.
    """
    return DAG(dag_id=dag_id, schedule=schedule, catchup=False, max_active_runs=1,
               default_args=default_args(retries), tags=tags, doc_md=doc_md, params=params or {})


def dhaka_cron(cron: str) -> CronTriggerTimetable:
    """Run at the cron's moments in Asia/Dhaka (DSE's clock): an explicit timetable, not an interval schedule.

    A DAG that never ran waits for the next moment (``run_immediately=False``). One that missed moments while
    the platform was down runs the latest of them once when it is back (catchup off), so a retrain or an end
    of day that fell in the downtime still happens.
    """
    return CronTriggerTimetable(cron, timezone="Asia/Dhaka", run_immediately=False)


def run_day(logical_date: dt.datetime | None, data_interval_end: dt.datetime | None = None) -> dt.date:
    """The day (Asia/Dhaka) a run is for: its logical date, else its data interval's end, else today.

    A scheduled run of a `dhaka_cron` DAG has a logical date; a manual trigger may have none
    (Airflow 3), and then the run is for when it runs.
    """
    moment = logical_date or data_interval_end
    return (pendulum.instance(moment) if moment else pendulum.now(DHAKA)).in_timezone(DHAKA).date()
