"""Airflow's REST API, as the platform uses it (the nightly report as a run note)."""

from __future__ import annotations

import logging

import httpx

from dse_platform.config import Settings

log = logging.getLogger("dse.orchestration")


def set_run_note(settings: Settings, dag_id: str, run_id: str, text: str) -> None:
    """PATCH the DAG run's note through Airflow's REST API (the UI shows it on the run)."""
    from dse_platform.runtime.airflow_env import admin_password

    base = settings.airflow_url
    try:
        token = httpx.post(f"{base}/auth/token", json={"username": "admin",
                                                        "password": admin_password(settings) or ""},
                           timeout=10).raise_for_status().json()["access_token"]
        httpx.patch(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"note": text[:1000]},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("run note not set (%s): the report is in the task log and MLflow", exc)
