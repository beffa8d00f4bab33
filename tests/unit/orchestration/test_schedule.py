"""When a project DAG runs on its own: a fresh platform waits for the next moment, a downtime is caught up once.

The DAG goes through Airflow's own serialization, as the dag-processor hands it to the scheduler, and the
scheduler's `next_dagrun_info` decides; only the clock is set.
"""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.serialization.serialized_objects import DagSerialization
from airflow.timetables.base import DagRunInfo

from dse_platform.orchestration.airflow import defaults

CRON = "30 15 * * 0-4"  # the nightly retrain's default: 09:30 UTC, Sunday to Thursday
NOW = pendulum.datetime(2026, 11, 25, 15, 15, tz="UTC")  # a Wednesday, 21:15 in Dhaka


@pytest.fixture
def scheduled(monkeypatch):
    """The scheduler's view of a project DAG on the retrain's cron, with the clock at NOW."""
    import airflow.timetables.trigger as trigger

    monkeypatch.setattr(trigger, "utcnow", lambda: NOW)
    with defaults.project_dag("dse_schedule_probe", defaults.dhaka_cron(CRON), tags=["dse"], doc_md=None) as dag:
        EmptyOperator(task_id="step")
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_a_dag_that_never_ran_waits_for_its_next_moment(scheduled):
    first = scheduled.next_dagrun_info(last_automated_run_info=None)
    assert first.run_after == pendulum.datetime(2026, 11, 26, 9, 30, tz="UTC")


def test_after_a_downtime_the_latest_missed_moment_runs_once(scheduled):
    sunday = pendulum.datetime(2026, 11, 22, 9, 30, tz="UTC")  # the last run before three missed days
    following = scheduled.next_dagrun_info(last_automated_run_info=DagRunInfo.interval(sunday, sunday))
    assert following.run_after == pendulum.datetime(2026, 11, 25, 9, 30, tz="UTC")  # today's, not Monday's


def test_a_run_that_is_not_late_is_the_next_moment(scheduled):
    today = pendulum.datetime(2026, 11, 25, 9, 30, tz="UTC")
    following = scheduled.next_dagrun_info(last_automated_run_info=DagRunInfo.interval(today, today))
    assert following.run_after == pendulum.datetime(2026, 11, 26, 9, 30, tz="UTC")
