"""Security by default on the running platform: MLflow, Airflow and PostgreSQL each refuse a caller without a login."""

from __future__ import annotations

import httpx
import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dse_platform import credentials
from dse_platform.dashboard import connection

pytestmark = pytest.mark.services

MLFLOW_API = "/api/2.0/mlflow/experiments/search"


def test_mlflow_refuses_a_request_without_credentials_and_accepts_the_generated_ones(platform):
    params = {"max_results": 1}
    anonymous = httpx.get(f"{platform.tracking_uri}{MLFLOW_API}", params=params, timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.get(f"{platform.tracking_uri}{MLFLOW_API}", params=params, auth=("admin", "not-the-password"),
                      timeout=10)
    assert wrong.status_code == 401
    login = platform.mlflow_credentials
    assert login is not None and login[0] == credentials.MLFLOW_ADMIN
    assert httpx.get(f"{platform.tracking_uri}{MLFLOW_API}", params=params, auth=login, timeout=10).status_code == 200
    # health checks need no login
    assert httpx.get(f"{platform.tracking_uri}/health", timeout=10).text.strip() == "OK"


def test_generated_credentials_are_private_to_their_owner(platform):
    for path in (credentials.mlflow_file(platform.home), credentials.postgres_file(platform.home)):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert credentials.secrets_dir(platform.home).stat().st_mode & 0o777 == 0o700


def test_airflow_refuses_a_request_without_credentials(platform):
    resp = httpx.get(f"{platform.airflow_url}/api/v2/dags", timeout=10)
    assert resp.status_code == 401, resp.text


def _connect(url: str, **changes: str | None):
    """A raw psycopg2 connection to a SQLAlchemy URL, with some parts changed (None: left out)."""
    parts = make_url(url)
    params = {"host": parts.host, "port": parts.port, "user": parts.username, "password": parts.password,
              "dbname": parts.database} | changes
    return psycopg2.connect(connect_timeout=10, **{k: v for k, v in params.items() if v is not None})


def test_serving_role_is_no_superuser_and_every_login_needs_its_password(platform):
    engine = create_engine(platform.serving_db_url)
    try:
        with engine.connect() as conn:
            user, superuser, owner = conn.execute(text(
                "SELECT current_user, rolsuper, pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d "
                "WHERE r.rolname = current_user AND d.datname = current_database()")).one()
    finally:
        engine.dispose()
    assert (user, superuser, owner) == (credentials.POSTGRES_APP_ROLE, False, credentials.POSTGRES_APP_ROLE)
    reader = connection.reader_url(platform).render_as_string(hide_password=False)
    for url in (platform.serving_db_url, reader):
        for password in (None, "not-the-password"):
            with pytest.raises(psycopg2.OperationalError, match="password"):
                _connect(url, password=password)
    with pytest.raises(psycopg2.OperationalError, match="password"):
        _connect(platform.serving_db_url, user=credentials.POSTGRES_SUPERUSER, password=None)
    # the dashboard's role logs in with its own password, and is no superuser either
    conn = _connect(reader)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False,)
    finally:
        conn.close()
