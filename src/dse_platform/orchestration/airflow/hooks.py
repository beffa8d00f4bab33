"""Hooks: the platform's services as Airflow connections, as the Spark provider does with ``spark_default``.

A DAG resolves where the serving database, the MLflow registry and the Spark
master are from Airflow's connections, so an operator can repoint a deployment
in Admin > Connections without touching ``DSE_*`` variables. ``dse up`` (and the
compose file) define all three; a missing connection falls back to the settings,
and says so in the task log.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from pydantic import SecretStr

from dse_platform.config import Settings, get_settings
from dse_platform.errors import PlatformError

SERVING_DB_CONN_ID = "dse_serving_db"
MLFLOW_CONN_ID = "dse_mlflow"
SPARK_CONN_ID = "spark_default"


def _connection(hook: BaseHook, conn_id: str) -> Any | None:
    """The connection, or None when it is not defined (Airflow raises for an unknown id)."""
    try:
        return hook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or the task SDK's own error for a missing id
        hook.log.warning("Airflow connection %r is not defined (%s); using the DSE_* settings", conn_id, exc)
        return None


class _PlatformHook(BaseHook):
    """A hook over one connection id; subclasses say which one by default and read it."""

    conn_name_attr = "conn_id"
    default_conn_name = ""

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    def connection(self) -> Any | None:
        return _connection(self, self.conn_id)


class ServingDatabaseHook(_PlatformHook):
    """The serving database: a connection whose ``extra`` holds the SQLAlchemy URL (``{"url": ...}``)."""

    default_conn_name = SERVING_DB_CONN_ID
    conn_type = "generic"
    hook_name = "DSE serving database"

    def url(self) -> str | None:
        conn = self.connection()
        return conn.extra_dejson.get("url") if conn is not None else None


class MlflowRegistryHook(_PlatformHook):
    """The MLflow tracking server and registry: an HTTP connection whose host is the tracking URI."""

    default_conn_name = MLFLOW_CONN_ID
    conn_type = "http"
    hook_name = "DSE MLflow registry"

    def tracking_uri(self) -> str | None:
        conn = self.connection()
        if conn is None or not conn.host:
            return None
        host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
        return f"{host}:{conn.port}" if conn.port else host

    def login(self) -> tuple[str, str] | None:
        """The connection's login and password (a server with basic auth), None when it has no login."""
        conn = self.connection()
        if conn is None or not conn.login:
            return None
        return conn.login, conn.password or ""


def platform_settings(settings: Settings | None = None) -> Settings:
    """The settings a task runs with: the serving DB and MLflow taken from Airflow's connections when defined."""
    settings = settings or get_settings()
    update: dict[str, Any] = {}
    if url := ServingDatabaseHook().url():
        update["db_url"] = url
    mlflow_hook = MlflowRegistryHook()
    if uri := mlflow_hook.tracking_uri():
        update["mlflow_tracking_uri"] = uri
    if login := mlflow_hook.login():
        update["mlflow_username"], update["mlflow_password"] = login[0], SecretStr(login[1])
    return settings.model_copy(update=update) if update else settings


def spark_preflight(settings: Settings) -> dict[str, str]:
    """The connector jars for spark-submit and the master of ``spark_default``; one clear error for either."""
    from dse_platform.runtime import jars

    return {"jars": jars.jar_list(settings, "spark"), "master": spark_master(settings)}


def spark_master(settings: Settings) -> str:
    """The Spark master of ``spark_default``; one clear error when the connection is missing."""
    try:
        conn = BaseHook.get_connection(SPARK_CONN_ID)
    except Exception as exc:  # Airflow raises AirflowNotFoundException (or a task-SDK error) for a missing id
        raise PlatformError(f"the Airflow connection '{SPARK_CONN_ID}' is missing ({exc})",
                            "set AIRFLOW_CONN_SPARK_DEFAULT (dse up does) or add it in Admin > Connections") from exc
    return conn.host or settings.spark_master
