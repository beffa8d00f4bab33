"""The demo's closing block against the running platform: every URL it prints answers and its login works."""

from __future__ import annotations

import re

import httpx

from dse_platform.runtime import demo


def test_closing_block_urls_answer_and_the_airflow_login_works(platform) -> None:
    closing = "\n".join(demo.closing_lines(platform))
    mlflow = re.search(r"MLflow\s+(\S+)", closing).group(1)
    airflow = re.search(r"Airflow\s+(\S+)\s+user (\S+), password (\S+)", closing)
    assert mlflow == platform.tracking_uri and airflow, closing
    assert httpx.get(f"{mlflow}/health", timeout=10).text.strip() == "OK"
    base, user, password = airflow.groups()
    token = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=10)
    assert token.status_code in (200, 201), token.text
    dags = httpx.get(f"{base}/api/v2/dags", headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                     timeout=10)
    assert dags.status_code == 200 and "dse_streaming" in dags.text
    board = re.search(r"Dashboard\s+(\S+)", closing).group(1)
    assert board == f"http://{platform.host}:{platform.dashboard_port}", closing
    assert httpx.get(f"{board}/_stcore/health", timeout=10).text.strip() == "ok"
    assert f"http://{platform.host}:{platform.spark_ui_port}" in closing  # the address the services bind to
    assert "dse down" in closing and platform.bars_topic in closing
