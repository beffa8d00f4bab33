"""Default arguments and the start date every project DAG shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum

DHAKA = pendulum.timezone("Asia/Dhaka")


#: a fixed start in the past; with catchup off, a late-enabled DAG runs only its latest interval
START = pendulum.datetime(2025, 1, 1, tz=DHAKA)


OWNER = "dse-platform"


def default_args(retries: int = 2) -> dict[str, Any]:
    """Retries with exponential backoff for every task (transient broker/registry hiccups)."""
    return {"owner": OWNER, "retries": retries, "retry_delay": dt.timedelta(minutes=1),
            "retry_exponential_backoff": True, "max_retry_delay": dt.timedelta(minutes=15)}
