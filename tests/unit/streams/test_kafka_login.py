"""Every Kafka client of the platform gets the same login from the settings (streams/kafka_io.py)."""

from __future__ import annotations

import os

import pytest

from dse_platform import credentials
from dse_platform.config import Settings
from dse_platform.streams import kafka_io

PASSWORD = "pw-1"  # pragma: allowlist secret


@pytest.fixture
def make_settings(monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    return lambda **overrides: Settings(_env_file=None, home=tmp_path / "var", **overrides)


def test_without_sasl_clients_only_get_the_bootstrap_list(make_settings):
    settings = make_settings()
    assert kafka_io.client_config(settings) == {"bootstrap_servers": "127.0.0.1:9092"}
    assert kafka_io.librdkafka_config(settings) == {"bootstrap.servers": "127.0.0.1:9092"}
    assert kafka_io.spark_options(settings) == {"kafka.bootstrap.servers": "127.0.0.1:9092"}


def test_with_sasl_every_client_kind_logs_in_with_scram(make_settings):
    settings = make_settings(kafka_bootstrap="kafka:9092", kafka_sasl=True, kafka_username="svc",
                             kafka_password=PASSWORD)
    assert kafka_io.client_config(settings, "kafka-2:9092") == {
        "bootstrap_servers": "kafka-2:9092", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD}
    assert kafka_io.librdkafka_config(settings)["sasl.username"] == "svc"
    options = kafka_io.spark_options(settings)
    assert options["kafka.security.protocol"] == "SASL_PLAINTEXT"
    assert options["kafka.sasl.jaas.config"] == (
        f'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="{PASSWORD}";')


def test_the_local_cluster_login_is_generated_once_and_read_by_clients(make_settings):
    settings = make_settings(kafka_brokers=3)
    lines = credentials.ensure_local(settings.model_copy(update={"mlflow_auth": False, "db_backend": "sqlite"}))
    assert any("Kafka SCRAM login dse" in line for line in lines)
    stored = credentials.read(credentials.kafka_file(settings.home))
    assert settings.kafka_credentials == ("dse", stored["password"])
    assert credentials.kafka_file(settings.home).stat().st_mode & 0o777 == 0o600
    assert not [line for line in credentials.ensure_local(settings) if "Kafka" in line]
