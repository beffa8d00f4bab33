"""Security by default on the running platform: MLflow, Airflow and PostgreSQL each refuse a caller without a
login, and the stream's model watcher refuses a pickled model in the registry without ever opening it."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid
from pathlib import Path

import cloudpickle
import httpx
import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import mlflow
from dse_platform import credentials
from dse_platform.dashboard import connection
from dse_platform.data import store
from dse_platform.model import gate, registry, training
from dse_platform.serving import database
from dse_platform.serving.watcher import ModelWatcher
from tests.support.platform import fresh_database, wait_for

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


class _Trap:
    """What a pickled model can carry: unpickling it calls ``open(marker, "w")``, which creates the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickled_model_moved_to_production_is_refused_unopened_and_the_last_good_one_keeps_serving(
        platform, shipped_store, tmp_path):
    """As anyone who can write to MLflow could: the served pipeline with a payload, pickled, registered with the
    good version's signature and tags, then moved to the alias the stream follows."""
    _, target = shipped_store
    counts = store.read_bars(target, columns=["symbol", "date"]).groupby("symbol").size()
    # a small logistic-regression model and a half-second poll: what is tested is the watcher's refusal, not the
    # training, and the alias move is seen within a second (the default poll is the stream's, not the property's)
    cfg = platform.model_copy(update={
        "store_dir_override": target, "model_name": f"pickle-{uuid.uuid4().hex[:8]}", "train_folds": 2,
        "train_test_sessions": 60, "train_recipe": "logreg", "stream_model_poll_s": 0.5,
        "db_url": fresh_database(platform)})
    good = training.train(cfg, symbols=sorted(counts[counts > 250].index)[::20][:6], cutoff=dt.date(2023, 6, 30))
    gate.promote(cfg, good.version, force=True)
    engine = database.engine(cfg)
    marker = tmp_path / "unpickled"
    # the payload is live: unpickling a trap creates its marker
    pickle.loads(cloudpickle.dumps(_Trap(tmp_path / "control")))
    assert (tmp_path / "control").exists()
    watcher = ModelWatcher(cfg, engine).start()
    try:
        assert watcher.current is not None and watcher.current.version == good.version
        model = registry.load(cfg, registry.alias_ref(cfg, cfg.model_alias))
        model.payload = _Trap(marker)
        uri = f"models:/{cfg.model_name}/{good.version}"
        registry.configure(cfg)
        with mlflow.start_run(run_name="pickled-upload"):
            # pip_requirements given: MLflow would otherwise infer them by loading the model, running the payload
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                            signature=mlflow.models.get_model_info(uri).signature,
                                            pip_requirements=[], registered_model_name=cfg.model_name)
        assert not marker.exists(), "logging the model ran its payload: the test would prove nothing"
        pickled = str(info.registered_model_version)
        client = registry.connect(cfg)
        for key, value in client.get_model_version(cfg.model_name, good.version).tags.items():
            client.set_model_version_tag(cfg.model_name, pickled, key, value)
        client.set_registered_model_alias(cfg.model_name, cfg.model_alias, pickled)
        wait_for(lambda: pickled in database.read_frame(engine, "model_events").query("event == 'rejected'")
                 ["version"].tolist(), 60, "the watcher to refuse the pickled version")
        assert watcher.alive and watcher.current.version == good.version
    finally:
        watcher.stop()
    events = database.read_frame(engine, "model_events")
    rejected = events[events["event"] == "rejected"]
    assert rejected["version"].tolist() == [pickled]
    assert "not skops" in str(rejected["details"].iloc[0])
    assert not marker.exists(), "the pickle was opened: its payload ran"
