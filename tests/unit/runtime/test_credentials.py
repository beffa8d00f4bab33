"""Generated credentials: made once with mode 0600, reused afterwards, announced only when made."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.dashboard import connection
from dse_platform.errors import PlatformError
from dse_platform.runtime import airflow_env, mlflow_auth, pgserver
from dse_platform.runtime.services import services
from dse_platform.runtime.supervisor_config import write_config


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(_env_file=None, home=tmp_path / "var", db_backend="postgres", postgres_port=6543)


def test_ensure_writes_0600_and_reuses_what_it_made(tmp_path):
    path = tmp_path / "secrets" / "svc.json"
    first, made = credentials.ensure(path, ["a", "b"])
    assert made and set(first) == {"a", "b"} and first["a"] != first["b"] and len(first["a"]) >= 40
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    again, made = credentials.ensure(path, ["a", "b"])
    assert not made and again == first
    # a key added later is generated without touching the others
    more, made = credentials.ensure(path, ["a", "b", "c"])
    assert made and {k: more[k] for k in ("a", "b")} == first and more["c"]


def test_a_file_others_can_read_is_narrowed(tmp_path):
    path = tmp_path / "svc.json"
    credentials.ensure(path, ["a"])
    path.chmod(0o644)
    credentials.ensure(path, ["a"])
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_broken_file_is_named_with_a_fix(tmp_path):
    path = tmp_path / "svc.json"
    path.write_text("{not json")
    with pytest.raises(PlatformError, match=str(path)) as err:
        credentials.ensure(path, ["a"])
    assert "dse up" in err.value.fix


def test_new_logins_are_announced_once(settings):
    lines = credentials.ensure_local(settings)
    stored = credentials.read(credentials.mlflow_file(settings.home))
    assert any(f"MLflow login admin / {stored['password']}" in line for line in lines)
    assert any("PostgreSQL passwords" in line and "0600" in line for line in lines)
    assert not any(credentials.read(credentials.postgres_file(settings.home))["app_password"] in line
                   for line in lines)
    assert credentials.ensure_local(settings) == []
    assert credentials.read(credentials.mlflow_file(settings.home)) == stored


def test_a_passwordless_cluster_of_an_earlier_version_is_refused(settings):
    (pgserver.data_dir(settings)).mkdir(parents=True)
    (pgserver.data_dir(settings) / "PG_VERSION").write_text("15\n")
    with pytest.raises(PlatformError, match="created without passwords") as err:
        credentials.ensure_local(settings)
    assert "DSE_DB_URL" in err.value.fix
    assert not credentials.postgres_file(settings.home).exists()


def test_clients_use_the_generated_logins(settings):
    assert settings.mlflow_credentials is None and make_url(settings.serving_db_url).password is None
    credentials.ensure_local(settings)
    mlflow_pw = credentials.read(credentials.mlflow_file(settings.home))["password"]
    pg = credentials.read(credentials.postgres_file(settings.home))
    assert settings.mlflow_credentials == ("admin", mlflow_pw)
    serving = make_url(settings.serving_db_url)
    assert (serving.username, serving.password, serving.database) == ("dse", pg["app_password"], "dse")
    reader = connection.reader_url(settings)
    assert (reader.username, reader.password) == (settings.dashboard_db_user, pg["reader_password"])
    assert pg["reader_password"] not in connection.describe(settings)
    assert make_url(pgserver.admin_url(settings)).username == "postgres"
    conn = airflow_env.mlflow_connection(settings)
    assert (conn["login"], conn["password"]) == ("admin", mlflow_pw)


def test_settings_credentials_win_and_must_come_in_pairs(settings):
    credentials.ensure_local(settings)
    external = settings.model_copy(update={"mlflow_tracking_uri": "https://mlflow.example", "mlflow_username": "ci",
                                           "mlflow_password": SecretStr("s3cret-value")})
    assert external.mlflow_credentials == ("ci", "s3cret-value")
    assert "s3cret-value" not in repr(external)
    assert settings.model_copy(update={"mlflow_tracking_uri": "https://mlflow.example"}).mlflow_credentials is None
    with pytest.raises(PlatformError, match="DSE_MLFLOW_USERNAME is set but DSE_MLFLOW_PASSWORD is not"):
        _ = settings.model_copy(update={"mlflow_username": "ci"}).mlflow_credentials


def test_mlflow_runs_basic_auth_with_its_secrets_kept_out_of_supervisors_config(settings):
    settings = settings.model_copy(update={"kafka_bootstrap": "broker:9092"})  # no local broker: no jars needed
    credentials.ensure_local(settings)
    svc = next(s for s in services(settings) if s.name == "mlflow")
    assert svc.command()[-2:] == ["--app-name", "basic-auth"]
    svc.prepare()
    ini = mlflow_auth.config_path(settings).read_text()
    assert "admin_username = admin" in ini and "password" not in ini
    secret = svc.secret_env()
    stored = credentials.read(credentials.mlflow_file(settings.home))
    assert secret["MLFLOW_AUTH_ADMIN_PASSWORD"] == stored["password"]
    assert secret["MLFLOW_FLASK_SERVER_SECRET_KEY"] == stored["flask_secret_key"]
    conf = write_config(settings, services(settings)).read_text()
    for value in (*stored.values(), *credentials.read(credentials.postgres_file(settings.home)).values()):
        assert value not in conf
    off = settings.model_copy(update={"mlflow_auth": False})
    plain = next(s for s in services(off) if s.name == "mlflow")
    assert "--app-name" not in plain.command() and plain.secret_env is None and off.mlflow_credentials is None


def test_the_server_does_not_start_without_its_secrets(settings):
    with pytest.raises(PlatformError, match=r"mlflow\.json lacks password, flask_secret_key"):
        mlflow_auth.secret_environment(settings)


def test_the_stored_file_is_plain_json(settings):
    credentials.ensure_local(settings)
    assert set(json.loads(credentials.mlflow_file(settings.home).read_text())) == set(credentials.MLFLOW_KEYS)
