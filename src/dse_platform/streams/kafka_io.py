"""Kafka plumbing shared by replay, the live connector, the streaming job and the tests.

Topic creation with the configured partitions/replication and no-loss producers
(acks=all, idempotence, unbounded retries within a delivery timeout). Every client
takes the one login of ``Settings.kafka_credentials`` in its own dialect (Java properties,
Spark's options, kafka-python, librdkafka), so turning SASL on reaches all of them.
What the records hold is defined in :mod:`dse_platform.contracts.records`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from dse_platform.config import Settings
from dse_platform.contracts.records import MAX_TOPIC_MESSAGE_BYTES
from dse_platform.errors import PlatformError

#: the only SASL mechanism the brokers enable: the password itself never crosses the wire (records still
#: travel unencrypted: SASL_PLAINTEXT, no TLS)
SASL_MECHANISM = "SCRAM-SHA-512"
SASL_PROTOCOL = "SASL_PLAINTEXT"


def jaas_login(user: str, password: str) -> str:
    """The JAAS line of a SCRAM login, as Java clients (Spark's source, Kafka's tools) and brokers take it."""
    return (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
            f'password="{password}";')


def java_client_properties(settings: Settings) -> dict[str, str]:
    """A Java client's connection properties: the bootstrap list, and the SCRAM login when SASL is on."""
    props = {"bootstrap.servers": settings.bootstrap_servers}
    login = settings.kafka_credentials
    if login:
        props |= {"security.protocol": SASL_PROTOCOL, "sasl.mechanism": SASL_MECHANISM,
                  "sasl.jaas.config": jaas_login(*login)}
    return props


def spark_options(settings: Settings) -> dict[str, str]:
    """Spark's Kafka source and sink options: the Java properties, each prefixed ``kafka.``."""
    return {f"kafka.{key}": value for key, value in java_client_properties(settings).items()}


def client_config(settings: Settings, servers: str | None = None) -> dict[str, Any]:
    """kafka-python's connection arguments (``servers`` instead of the bootstrap list, e.g. one node)."""
    config: dict[str, Any] = {"bootstrap_servers": servers or settings.bootstrap_servers}
    login = settings.kafka_credentials
    if login:
        config |= {"security_protocol": SASL_PROTOCOL, "sasl_mechanism": SASL_MECHANISM,
                   "sasl_plain_username": login[0], "sasl_plain_password": login[1]}
    return config


def librdkafka_config(settings: Settings) -> dict[str, str]:
    """confluent-kafka's connection properties."""
    config = {"bootstrap.servers": settings.bootstrap_servers}
    login = settings.kafka_credentials
    if login:
        config |= {"security.protocol": SASL_PROTOCOL, "sasl.mechanism": SASL_MECHANISM,
                   "sasl.username": login[0], "sasl.password": login[1]}
    return config


def unreachable(settings: Settings) -> PlatformError:
    """No broker let a client in: down, elsewhere, or (SASL on) refusing the login, which looks the same to it."""
    fix = "start the services with `dse up` or set DSE_KAFKA_BOOTSTRAP"
    if settings.kafka_sasl_enabled:
        fix += ("; SASL is on: check DSE_KAFKA_USERNAME/DSE_KAFKA_PASSWORD (or var/secrets/kafka.json) against the "
                "login the brokers were formatted with (their log names a failed authentication)")
    return PlatformError(f"no Kafka broker answers at {settings.bootstrap_servers}", fix)


def all_topics(settings: Settings) -> list[str]:
    return [settings.bars_topic, settings.ticks_topic, settings.predictions_topic, settings.deadletter_topic]


def _admin(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(**client_config(settings), client_id="dse-admin", request_timeout_ms=15000)
    except (KafkaError, ValueError, OSError) as exc:
        raise unreachable(settings) from exc


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """A created topic's configs: acks=all waits for min.insync.replicas copies, so a broker's loss loses no write."""
    if settings.min_insync_replicas > settings.replication_factor:
        raise PlatformError(
            f"DSE_TOPIC_MIN_INSYNC={settings.min_insync_replicas} exceeds the replication factor "
            f"{settings.replication_factor}: no write could ever be acknowledged",
            "lower DSE_TOPIC_MIN_INSYNC or raise DSE_TOPIC_REPLICATION (and DSE_KAFKA_BROKERS)")
    configs = {"min.insync.replicas": str(settings.min_insync_replicas)}
    if topic in {settings.bars_topic, settings.ticks_topic}:
        configs["max.message.bytes"] = str(MAX_TOPIC_MESSAGE_BYTES)
    return configs


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None) -> list[str]:
    """Create missing topics (DSE_TOPIC_PARTITIONS, the replication factor, min.insync.replicas); returns them."""
    wanted = list(topics or all_topics(settings))
    admin = _admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, settings.topic_partitions, settings.replication_factor,
                                              topic_configs=topic_configs(settings, topic))])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
            except InvalidReplicationFactorError as exc:
                raise PlatformError(
                    f"topic {topic} needs {settings.replication_factor} replicas but the cluster at "
                    f"{settings.bootstrap_servers} has fewer brokers: {exc}",
                    "lower DSE_TOPIC_REPLICATION, or start more brokers (DSE_KAFKA_BROKERS)") from exc
        _wait_for_metadata(admin, wanted)
        return created
    finally:
        admin.close()


def _wait_for_metadata(admin: KafkaAdminClient, topics: list[str], timeout_s: float = 30) -> None:
    """Topic creation completes asynchronously: wait until the broker lists every topic."""
    poll = Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.2),
                    retry=retry_if_result(lambda seen: not seen), retry_error_callback=lambda _: False)
    if not poll(lambda: set(topics) <= set(admin.list_topics())):
        raise PlatformError(f"topics {topics} not visible after {timeout_s}s", "check the broker with `dse status`")


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that loses nothing: acks=all, idempotent, retried until the delivery timeout."""
    config: dict[str, Any] = dict(
        **client_config(settings), acks="all", enable_idempotence=True,
        retries=2**31 - 1, max_in_flight_requests_per_connection=5, delivery_timeout_ms=120000,
        linger_ms=20, batch_size=256 * 1024,
        key_serializer=lambda k: k.encode("utf-8"), client_id="dse-producer")
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except (KafkaError, ValueError, OSError) as exc:
        raise unreachable(settings) from exc


class BulkProducer:
    """A no-loss producer for bulk sends (replay), on librdkafka through confluent-kafka.

    kafka-python spends ~100 us of Python per record; librdkafka batches in C. Measured by
    bench/bench_replay.py on 2 cores: whole-history replay 13k bars/s with kafka-python, 52k with this.
    Same guarantees as :func:`producer`: acks=all,
    idempotence, retries until the delivery timeout; :meth:`flush_or_fail` raises if any record
    was not acknowledged.
    """

    def __init__(self, settings: Settings, client_id: str = "dse-bulk") -> None:
        from confluent_kafka import Producer

        self.servers = settings.bootstrap_servers
        self._producer = Producer({
            **librdkafka_config(settings), "client.id": client_id, "acks": "all",
            "enable.idempotence": True, "delivery.timeout.ms": 120000, "linger.ms": 20,
            "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
            # the Java client's key -> partition mapping, as kafka-python uses
            "partitioner": "murmur2_random",
        })
        self._failures: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failures.append(str(err))

    def send(self, topic: str, key: str, value: bytes) -> None:
        """Queue one record; waits for room when librdkafka's queue is full."""
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                self._producer.poll(0.05)

    def flush_or_fail(self, timeout_s: float = 120) -> None:
        """Wait until every queued record is acknowledged; raise naming the first failure."""
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []  # reported once: a caller that re-sends starts clean
        if remaining or failures:
            problem = failures[0] if failures else f"{remaining} records unacknowledged after {timeout_s}s"
            raise PlatformError(f"Kafka at {self.servers} did not acknowledge every record: {problem}",
                                "check the broker with `dse status`, then resume with --resume")

    def close(self) -> None:
        """Release librdkafka's threads and connections, which otherwise retry a stopped broker while this lives."""
        self._producer.close()


def flush_or_fail(prod: KafkaProducer, futures: list, timeout_s: float = 120) -> None:
    """Wait until every send is acknowledged; raise naming the first failure."""
    prod.flush(timeout_s)
    for fut in futures:
        try:
            fut.get(timeout=timeout_s)
        except KafkaError as exc:
            raise PlatformError(f"Kafka did not acknowledge a record: {exc}",
                                "check the broker with `dse status`, then resume with --resume") from exc


def records_in(settings: Settings, topic: str) -> int:
    """How many records a topic holds (sum of its partitions' end offsets): progress of a replay."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**client_config(settings), client_id="dse-progress")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()
