"""plugins/dse_links.py: the Airflow plugin linking the MLflow registry, the Spark UI and the dashboard."""

from __future__ import annotations

import importlib.util

from airflow.plugins_manager import AirflowPlugin

from dse_platform.config import PROJECT_DIR, get_settings


def _load_plugin_module():
    spec = importlib.util.spec_from_file_location("dse_links", PROJECT_DIR / "plugins" / "dse_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_adds_three_nav_links(make_settings):
    module = _load_plugin_module()
    plugin = module.DsePlatformPlugin
    assert issubclass(plugin, AirflowPlugin) and plugin.name == "dse_platform"
    assert plugin.external_views == module.nav_links(get_settings())
    settings = make_settings(host="10.1.2.3", mlflow_port=5999, spark_ui_port=4444, dashboard_port=8599,
                             model_name="dse-direction")
    links = module.nav_links(settings)
    assert [link["href"] for link in links] == [
        "http://10.1.2.3:5999/#/models/dse-direction", "http://10.1.2.3:4444", "http://10.1.2.3:8599"]
    for link in links:  # the keys Airflow's UI reads from an external view
        assert set(link) == {"name", "href", "destination", "category"}
        assert link["destination"] == "nav" and link["category"] == module.CATEGORY


def test_public_urls_replace_the_service_addresses_in_the_links(make_settings):
    """In compose the services listen on container names; browsers reach them on the published host ports."""
    module = _load_plugin_module()
    settings = make_settings(host="0.0.0.0", mlflow_tracking_uri="http://mlflow:5000", model_name="m",
                             public_mlflow_url="http://localhost:5001", public_spark_url="http://localhost:4041",
                             public_dashboard_url="http://localhost:8502")
    assert [link["href"] for link in module.nav_links(settings)] == [
        "http://localhost:5001/#/models/m", "http://localhost:4041", "http://localhost:8502"]
