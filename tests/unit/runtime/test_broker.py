"""The local Kafka broker's server.properties (runtime/broker.py)."""

from __future__ import annotations

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
