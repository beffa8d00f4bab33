"""Airflow connections resolve the platform's services; a missing one falls back to the settings."""

from __future__ import annotations

import json

import pytest

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.orchestration.airflow import hooks


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, db_url="sqlite:////tmp/from-settings.db",
                    mlflow_tracking_uri="http://settings-host:5000")


def test_connections_override_the_settings(monkeypatch, settings):
    monkeypatch.setenv("AIRFLOW_CONN_DSE_SERVING_DB", json.dumps(
        {"conn_type": "generic", "extra": {"url": "postgresql+psycopg2://dse@db-host:5432/dse"}}))
    monkeypatch.setenv("AIRFLOW_CONN_DSE_MLFLOW", json.dumps({"conn_type": "http", "host": "mlflow-host",
                                                              "port": 5001}))
    resolved = hooks.platform_settings(settings)
    assert resolved.serving_db_url == "postgresql+psycopg2://dse@db-host:5432/dse"
    assert resolved.tracking_uri == "http://mlflow-host:5001"
    assert settings.serving_db_url == "sqlite:////tmp/from-settings.db"  # the original is untouched


def test_missing_connections_fall_back_to_the_settings(monkeypatch, settings):
    monkeypatch.delenv("AIRFLOW_CONN_DSE_SERVING_DB", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_DSE_MLFLOW", raising=False)
    resolved = hooks.platform_settings(settings)
    assert resolved.serving_db_url == settings.serving_db_url
    assert resolved.tracking_uri == settings.tracking_uri


def test_spark_master_comes_from_spark_default(monkeypatch, settings):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "spark://m:7077"}))
    assert hooks.spark_master(settings) == "spark://m:7077"
    monkeypatch.delenv("AIRFLOW_CONN_SPARK_DEFAULT")
    with pytest.raises(PlatformError, match="spark_default"):
        hooks.spark_master(settings)


def test_the_mlflow_connection_carries_the_login(monkeypatch, settings):
    monkeypatch.setenv("AIRFLOW_CONN_DSE_MLFLOW", json.dumps({"conn_type": "http", "host": "mlflow-host",
                                                              "login": "admin",
                                                              "password": "from-the-conn"}))  # pragma: allowlist secret
    resolved = hooks.platform_settings(settings)
    assert resolved.mlflow_credentials == ("admin", "from-the-conn")
    assert "from-the-conn" not in repr(resolved)
