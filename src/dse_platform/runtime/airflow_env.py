"""Airflow's environment for this project: one AIRFLOW_HOME under var/, our dags/ and plugins/.

Used by the process manager for ``airflow standalone`` and by ``dse airflow ...``
(and the tests) for ``airflow dags test``, so every Airflow process sees the
same metadata DB, folders and api-server address.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dse_platform.config import Settings


def venv_bin() -> Path:
    """Folder of the running interpreter's console scripts (airflow, mlflow, supervisord)."""
    return Path(sys.executable).parent


def path_with_venv() -> str:
    """PATH with our virtualenv first, so services find its console scripts (airflow, uvicorn...)."""
    return f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The AIRFLOW__* variables every Airflow process of the platform runs with."""
    home = settings.airflow_home
    api = f"http://{settings.host}:{settings.airflow_port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_dir / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.project_dir / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # the project's DAGs run on their schedules from the start: nobody has to unpause them by hand
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(settings.airflow_dags_paused),
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Dhaka",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(
            {"conn_type": "spark", "host": settings.spark_master}),
        "AIRFLOW_CONN_DSE_SERVING_DB": json.dumps(
            {"conn_type": "generic", "extra": {"url": settings.serving_db_url}}),
        "AIRFLOW_CONN_DSE_MLFLOW": json.dumps(mlflow_connection(settings)),
        "PATH": path_with_venv(),
        "PYSPARK_PYTHON": sys.executable,
    }


def mlflow_connection(settings: Settings) -> dict[str, str]:
    """The ``dse_mlflow`` connection: the tracking server, with the platform's login when it has one."""
    conn = {"conn_type": "http", "host": settings.tracking_uri}
    if login := settings.mlflow_credentials:
        conn |= {"login": login[0], "password": login[1]}
    return conn


def password_file(settings: Settings) -> Path:
    """Where Airflow's standalone writes the generated passwords (readable by this user only: `dse up` sets 0600)."""
    return settings.airflow_home / "simple_auth_manager_passwords.json.generated"


def protect_passwords(settings: Settings) -> None:
    """Make the generated passwords readable by this user only (Airflow writes them world-readable)."""
    path = password_file(settings)
    if path.exists():
        path.chmod(0o600)


def admin_password(settings: Settings) -> str | None:
    """The generated password of Airflow's ``admin`` user, once standalone has made it."""
    path = password_file(settings)
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("admin")
