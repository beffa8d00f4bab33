"""Settings: defaults under var/, DSE_ overrides, derived URLs."""

from __future__ import annotations

from dse_platform.config import PROJECT_DIR, Settings


def test_defaults_keep_state_under_var(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    s = Settings(_env_file=None)
    assert s.home == PROJECT_DIR / "var"
    assert s.jars_dir == PROJECT_DIR / "var" / "jars"
    assert s.serving_db_url == f"sqlite:///{PROJECT_DIR / 'var' / 'serving.db'}"
    assert s.mlflow_store_uri.startswith("sqlite:///") and "var/mlflow" in s.mlflow_store_uri
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.model_name == "dse-direction" and s.model_alias == "production"


def test_env_overrides_and_postgres(monkeypatch, tmp_path):
    monkeypatch.setenv("DSE_HOME", str(tmp_path))
    monkeypatch.setenv("DSE_DB_BACKEND", "postgres")
    monkeypatch.setenv("DSE_POSTGRES_PORT", "6543")
    monkeypatch.setenv("DSE_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    s = Settings(_env_file=None)
    assert s.local_postgres
    assert s.serving_db_url == "postgresql+psycopg2://dse@127.0.0.1:6543/dse"
    assert not s.local_kafka and s.bootstrap_servers == "broker-a:9092,broker-b:9092"
    monkeypatch.setenv("DSE_DB_URL", "postgresql+psycopg2://u:p@db:5432/x")
    s = Settings(_env_file=None)
    assert not s.local_postgres and s.serving_db_url.endswith("@db:5432/x")


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    for key in [k for k in __import__("os").environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    env_file = tmp_path / ".env"
    env_file.write_text("DSE_MLFLOW_PORT=5999\nDSE_BARS_TOPIC=custom.bars.v1\n")
    s = Settings(_env_file=env_file)
    assert s.tracking_uri == "http://127.0.0.1:5999"
    assert s.bars_topic == "custom.bars.v1"
