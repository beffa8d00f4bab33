"""The local Kafka brokers' server.properties, ports, storage layout and commands (runtime/broker.py)."""

from __future__ import annotations

import base64
import uuid

import pytest

from dse_platform.errors import PlatformError
from dse_platform.runtime import broker


def test_server_properties_one_kraft_node_on_the_configured_host(make_settings):
    settings = make_settings(host="127.0.0.7", kafka_port=19092, kafka_controller_port=19093, topic_partitions=4)
    props = dict(line.split("=", 1) for line in broker.server_properties(settings).splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.7:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.7:19092,CONTROLLER://127.0.0.7:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.7:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(settings.home / "kafka" / "data")
    assert props["num.partitions"] == "4"
    assert props["auto.create.topics.enable"] == "false"
    # replayed history must not age out under a long-running stream
    assert props["log.retention.hours"] == props["log.retention.bytes"] == "-1"
    assert props["offsets.topic.replication.factor"] == "1"


def test_cluster_ids_are_kafka_shaped():
    first, second = broker.random_cluster_id(), broker.random_cluster_id()
    assert first != second and len(first) == 22 and "=" not in first


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """1 in 64 random ids would, and `kafka-storage format` then read it as an option (`dse up` failed)."""
    dash, plain = uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))
    drawn = iter([dash, dash, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(drawn))
    assert base64.urlsafe_b64encode(dash.bytes).decode().startswith("-")
    assert broker.random_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


def test_three_nodes_form_one_quorum_each_on_its_own_ports_and_log_dir(make_settings):
    settings = make_settings(host="127.0.0.7", kafka_port=19092, kafka_controller_port=19093, kafka_brokers=3)
    assert broker.quorum_voters(settings) == "1@127.0.0.7:19093,2@127.0.0.7:19103,3@127.0.0.7:19113"
    assert settings.bootstrap_servers == "127.0.0.7:19092,127.0.0.7:19102,127.0.0.7:19112"
    nodes = {n: dict(line.split("=", 1) for line in broker.server_properties(settings, n).splitlines())
             for n in broker.nodes(settings)}
    assert [props["node.id"] for props in nodes.values()] == ["1", "2", "3"]
    assert {props["controller.quorum.voters"] for props in nodes.values()} == {broker.quorum_voters(settings)}
    # three brokers authenticate their clients by default (SASL/SCRAM)
    assert nodes[2]["listeners"] == "SASL_PLAINTEXT://127.0.0.7:19102,CONTROLLER://127.0.0.7:19103"
    assert nodes[2]["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.7:19102"
    assert len({props["log.dirs"] for props in nodes.values()}) == 3
    # a three-voter cluster never reuses the single broker's storage (formatted for another voter set)
    assert nodes[1]["log.dirs"] == str(settings.home / "kafka" / "cluster-3" / "node-1" / "data")
    # Kafka's own topics survive a broker's loss like the platform's
    assert nodes[3]["offsets.topic.replication.factor"] == nodes[3]["transaction.state.log.replication.factor"] == "3"
    assert nodes[3]["transaction.state.log.min.isr"] == "2"


def test_each_node_runs_its_own_properties(make_settings, monkeypatch):
    monkeypatch.setattr(broker, "java_base", lambda settings: ["/opt/jdk/bin/java", "-cp", "jars/*"])
    settings = make_settings(kafka_brokers=2)
    node_2 = settings.home / "kafka" / "cluster-2" / "node-2"
    assert broker.command(settings, 2)[-2:] == ["kafka.Kafka", str(node_2 / "server.properties")]


def test_the_single_broker_keeps_the_layout_compose_mounts(make_settings):
    settings = make_settings()
    assert broker.write_config(settings) == settings.home / "kafka" / "server.properties"
    assert broker.data_dir(settings) == settings.home / "kafka" / "data"


def test_brokers_sharing_a_port_are_refused_naming_the_settings(make_settings):
    settings = make_settings(kafka_brokers=2, kafka_port=19092, kafka_controller_port=19102)
    with pytest.raises(PlatformError, match="DSE_KAFKA_CONTROLLER_PORT=19102"):
        broker.write_config(settings)


def test_later_nodes_join_the_cluster_id_of_the_first(make_settings):
    settings = make_settings(kafka_brokers=3)
    meta = broker.data_dir(settings, 1) / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nnode.id=1\n")
    assert broker.cluster_id(settings) == "AbCdEfGhIjKlMnOpQrStUv"


def _props(settings, node: int = 1) -> dict[str, str]:
    return dict(line.split("=", 1) for line in broker.server_properties(settings, node).splitlines())


def test_sasl_is_off_for_one_broker_and_on_for_the_three_broker_cluster(make_settings):
    assert not make_settings().kafka_sasl_enabled
    assert make_settings().kafka_credentials is None
    assert make_settings(kafka_brokers=3).kafka_sasl_enabled
    assert not make_settings(kafka_brokers=3, kafka_sasl=False).kafka_sasl_enabled
    assert make_settings(kafka_sasl=True).kafka_sasl_enabled
    # an existing cluster authenticates only when told to
    assert not make_settings(kafka_bootstrap="kafka:9092", kafka_brokers=3).kafka_sasl_enabled


def test_with_sasl_the_client_and_broker_listener_takes_scram_only(make_settings):
    settings = make_settings(host="127.0.0.7", kafka_port=19092, kafka_controller_port=19093, kafka_sasl=True,
                             kafka_password="s3cret-for-test")  # pragma: allowlist secret
    props = _props(settings)
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.7:19092,CONTROLLER://127.0.0.7:19093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.7:19092"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    # the password is in the 0600 JAAS file, never in server.properties
    assert "s3cret-for-test" not in broker.server_properties(settings)
    broker.write_config(settings)
    jaas = broker.jaas_path(settings)
    assert jaas.stat().st_mode & 0o777 == 0o600
    assert 'username="dse" password="s3cret-for-test";' in jaas.read_text()  # pragma: allowlist secret
    assert jaas.read_text().startswith("KafkaServer {")


def test_without_sasl_no_login_file_is_written(make_settings):
    settings = make_settings()
    broker.write_config(settings)
    assert not [key for key in _props(settings) if key.startswith("sasl.")]
    assert not broker.jaas_path(settings).exists()


def test_the_brokers_java_reads_the_jaas_file_only_with_sasl(make_settings, monkeypatch):
    monkeypatch.setattr(broker, "check_java", lambda settings: "/opt/jdk/bin/java")
    monkeypatch.setattr(broker, "classpath", lambda settings, name: "jars/*")
    with_sasl = make_settings(kafka_sasl=True, kafka_password="pw")
    assert f"-Djava.security.auth.login.config={broker.jaas_path(with_sasl)}" in broker.command(with_sasl)
    assert not any("login.config" in arg for arg in broker.command(make_settings()))


def test_storage_formatted_without_scram_is_refused_when_sasl_is_turned_on(make_settings):
    settings = make_settings(kafka_sasl=True, kafka_password="pw")
    data = broker.data_dir(settings)
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("version=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nnode.id=1\n")
    with pytest.raises(PlatformError, match="formatted without SCRAM credentials") as caught:
        broker.format_storage(settings)
    assert "DSE_KAFKA_SASL=false" in caught.value.fix
    broker.scram_marker(data).write_text("dse\n")
    assert broker.format_storage(settings) is False


def test_sasl_without_a_known_password_says_how_to_get_one(make_settings):
    with pytest.raises(PlatformError, match="DSE_KAFKA_PASSWORD is not set"):
        broker.write_jaas(make_settings(kafka_bootstrap="kafka:9092", kafka_sasl=True))
    with pytest.raises(PlatformError, match="not generated yet"):
        broker.write_config(make_settings(kafka_brokers=3))
