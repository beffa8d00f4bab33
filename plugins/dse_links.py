"""Airflow UI navigation links to the platform's other UIs: the MLflow registry, the Spark UI, the dashboard.

Airflow 3 shows a plugin's ``external_views`` with ``destination: "nav"`` in its
navigation bar, under ``category``. Loaded by every Airflow process, so it
imports only the settings.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dse_platform.config import Settings, get_settings

CATEGORY = "DSE platform"


def nav_links(settings: Settings) -> list[dict[str, str]]:
    """The three links, built from the same settings the services run with, or the public URLs where a proxy or
    a container network puts the UIs elsewhere (the compose deployment sets them)."""
    mlflow = settings.public_mlflow_url or settings.tracking_uri
    links = {
        "MLflow model registry": f"{mlflow}/#/models/{settings.model_name}",
        "Spark UI (streaming job)": settings.public_spark_url or f"http://{settings.host}:{settings.spark_ui_port}",
        "Dashboard": settings.public_dashboard_url or f"http://{settings.host}:{settings.dashboard_port}",
    }
    return [{"name": name, "href": href, "destination": "nav", "category": CATEGORY} for name, href in links.items()]


class DsePlatformPlugin(AirflowPlugin):
    """Registers the platform's links with Airflow."""

    name = "dse_platform"
    external_views = nav_links(get_settings())
