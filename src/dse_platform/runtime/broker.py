"""The local Kafka brokers (KRaft: each node a broker and a controller in one JVM).

One node by default; ``DSE_KAFKA_BROKERS=N`` runs N nodes forming one controller
quorum, each with its own ports (:attr:`Settings.kafka_ports`), node id and log
dir. Writes each node's ``server.properties`` and a shared log4j2 config under
``var/kafka``, formats each node's storage once (all with one cluster id), and
builds the java command that the process manager runs per node.

With SASL on (:attr:`Settings.kafka_sasl_enabled`) the client listener, which is also
the brokers' own, takes SCRAM-SHA-512 logins only: the storage is formatted with the
platform's SCRAM credential (KRaft keeps it in the cluster metadata), and the brokers
log in to each other with it through a JAAS file (mode 0600) beside the properties.
The controller listener stays PLAINTEXT (KRaft controllers cannot check SCRAM, which
lives in the metadata they serve); it listens on DSE_HOST, or on the compose network only.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime.jars import classpath
from dse_platform.runtime.prereqs import check_java
from dse_platform.streams.kafka_io import SASL_MECHANISM, SASL_PROTOCOL, jaas_login

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def kafka_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def nodes(settings: Settings) -> list[int]:
    """The local brokers' node ids, 1..N."""
    return list(range(1, settings.kafka_brokers + 1))


def node_dir(settings: Settings, node: int) -> Path:
    """A node's folder: ``var/kafka`` for the single broker (the layout compose mounts), else one per cluster size.

    A cluster of another size gets fresh storage: nodes formatted for one voter set cannot join another.
    """
    if settings.kafka_brokers == 1:
        return kafka_dir(settings)
    return kafka_dir(settings) / f"cluster-{settings.kafka_brokers}" / f"node-{node}"


def data_dir(settings: Settings, node: int = 1) -> Path:
    return node_dir(settings, node) / "data"


def address(settings: Settings, node: int) -> str:
    """host:port of a node's client listener."""
    return f"{settings.host}:{settings.kafka_ports[node - 1]}"


def quorum_voters(settings: Settings) -> str:
    """``controller.quorum.voters``: every node, id@host:controller-port."""
    return ",".join(f"{node}@{settings.host}:{port}"
                    for node, port in zip(nodes(settings), settings.kafka_controller_ports, strict=True))


def client_protocol(settings: Settings) -> str:
    """Security protocol of the listener clients and the brokers themselves use."""
    return SASL_PROTOCOL if settings.kafka_sasl_enabled else "PLAINTEXT"


def server_properties(settings: Settings, node: int = 1) -> str:
    """One node's configuration: a KRaft broker and controller listening on DSE_HOST only."""
    host = settings.host
    port, controller_port = settings.kafka_ports[node - 1], settings.kafka_controller_ports[node - 1]
    # Kafka's internal topics (consumer offsets, transactions) replicated like the platform's own
    internal_rf = min(3, settings.kafka_brokers)
    client = client_protocol(settings)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": quorum_voters(settings),
        "listeners": f"{client}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{client}://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
        "log.dirs": str(data_dir(settings, node)),
        "num.partitions": str(settings.topic_partitions),
        "offsets.topic.replication.factor": str(internal_rf),
        "transaction.state.log.replication.factor": str(internal_rf),
        "transaction.state.log.min.isr": str(internal_rf // 2 + 1),
        "share.coordinator.state.topic.replication.factor": str(internal_rf),
        "share.coordinator.state.topic.min.isr": str(internal_rf // 2 + 1),
        "group.initial.rebalance.delay.ms": "0",
        # topics are created explicitly with the configured partitions and replication
        "auto.create.topics.enable": "false",
        # keep the replayed history: bars must not age out under a long-running stream
        "log.retention.hours": "-1",
        "log.retention.bytes": "-1",
        "message.max.bytes": str(2 * 1024 * 1024),
    }
    if settings.kafka_sasl_enabled:
        props |= {"sasl.enabled.mechanisms": SASL_MECHANISM, "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM}
    return "".join(f"{k}={v}\n" for k, v in props.items())


def jaas_path(settings: Settings) -> Path:
    """The brokers' JAAS file (SASL on): their own SCRAM login, shared by every node."""
    return kafka_dir(settings) / "jaas.conf"


def write_jaas(settings: Settings) -> Path:
    """Write the brokers' JAAS file with mode 0600 (it holds the password)."""
    path = jaas_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"KafkaServer {{\n  {jaas_login(*settings.kafka_credentials)}\n}};\n")
    return path


def check_ports(settings: Settings) -> None:
    """Refuse a layout whose brokers would share a port (e.g. DSE_KAFKA_CONTROLLER_PORT = DSE_KAFKA_PORT + 10)."""
    ports = [*settings.kafka_ports, *settings.kafka_controller_ports]
    if len(set(ports)) != len(ports):
        raise PlatformError(
            f"{settings.kafka_brokers} brokers on DSE_KAFKA_PORT={settings.kafka_port} and "
            f"DSE_KAFKA_CONTROLLER_PORT={settings.kafka_controller_port} would share ports ({sorted(ports)}): "
            "broker n uses both + 10*(n-1)",
            "choose ports whose difference is not a multiple of 10 (the defaults 9092/9093 are fine)")


def write_config(settings: Settings, node: int = 1) -> Path:
    """Write a node's server.properties and the shared log4j2.properties; returns the properties path."""
    check_ports(settings)
    kafka_dir(settings).mkdir(parents=True, exist_ok=True)
    (kafka_dir(settings) / "log4j2.properties").write_text(LOG4J2)
    path = node_dir(settings, node) / "server.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(server_properties(settings, node))
    if settings.kafka_sasl_enabled:
        write_jaas(settings)
    return path


def java_base(settings: Settings) -> list[str]:
    java = check_java(settings)
    jaas = [f"-Djava.security.auth.login.config={jaas_path(settings)}"] if settings.kafka_sasl_enabled else []
    return [str(java), f"-Dlog4j2.configurationFile={kafka_dir(settings) / 'log4j2.properties'}", *jaas,
            "-cp", classpath(settings, "kafka")]


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.toString).

    Never one starting with "-" (1 in 64 would): Kafka's own Uuid.randomUuid skips those too, as a command
    line reads them as an option.
    """
    while (found := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
        continue
    return found


def _meta_properties(settings: Settings, node: int) -> Path:
    return data_dir(settings, node) / "meta.properties"


def cluster_id(settings: Settings) -> str:
    """The id the nodes formatted so far carry (every node of a cluster must share it), else a new one."""
    for node in nodes(settings):
        meta = _meta_properties(settings, node)
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
    return random_cluster_id()


def format_storage(settings: Settings, node: int = 1) -> bool:
    """Format a node's log dir on its first start, with the cluster id of the nodes formatted before it.

    False when it was formatted before.
    """
    props = write_config(settings, node)
    return format_config(settings, props, data_dir(settings, node), cluster_id(settings))


def scram_marker(data: Path) -> Path:
    """Beside a log dir: the SCRAM user it was formatted with (absent: formatted without SASL)."""
    return data.parent / "scram-user"


def format_config(settings: Settings, props: Path, data: Path, cluster: str) -> bool:
    """Format ``data`` with the properties at ``props`` unless it was before (then False).

    With SASL on the platform's SCRAM credential goes into the new cluster's metadata. A log dir
    formatted without it is refused: no client could log in to it.
    """
    marker = scram_marker(data)
    if (data / "meta.properties").exists():
        if settings.kafka_sasl_enabled and not marker.exists():
            raise PlatformError(
                f"Kafka SASL is on but the storage in {data} was formatted without SCRAM credentials",
                f"set DSE_KAFKA_SASL=false, or remove {data.parent} (its topics go with it) so that it is "
                "formatted again with the platform's login")
        return False
    login = settings.kafka_credentials
    scram = ["--add-scram", f"{SASL_MECHANISM}=[name={login[0]},password={login[1]}]"] if login else []
    cmd = [*java_base(settings), "kafka.tools.StorageTool", "format",
           f"--cluster-id={cluster}", "-c", str(props), "--ignore-formatted", *scram]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise PlatformError(f"formatting Kafka storage in {data} failed: {tail}",
                            f"remove {data} if it is a leftover, then `dse up` again")
    if login:
        marker.write_text(f"{login[0]}\n")
    return True


def command(settings: Settings, node: int = 1) -> list[str]:
    """A node's java command line (heap kept small for a 2-core laptop-sized machine)."""
    java, *rest = java_base(settings)
    return [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", *rest,
            "kafka.Kafka", str(node_dir(settings, node) / "server.properties")]
