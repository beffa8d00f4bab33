"""The local single-node Kafka broker (KRaft: broker and controller in one JVM).

Writes ``server.properties`` and a log4j2 config under ``var/kafka``, formats
the storage once with a fresh cluster id, and builds the java command that the
process manager runs.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.runtime.jars import classpath
from dse_platform.runtime.prereqs import check_java

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


def data_dir(settings: Settings) -> Path:
    return kafka_dir(settings) / "data"


def server_properties(settings: Settings) -> str:
    """The broker's configuration: one KRaft node listening on loopback only."""
    host = settings.host
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{settings.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir(settings)),
        "num.partitions": str(settings.topic_partitions),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # topics are created explicitly with the configured partitions and replication
        "auto.create.topics.enable": "false",
        # keep the replayed history: bars must not age out under a long-running stream
        "log.retention.hours": "-1",
        "log.retention.bytes": "-1",
        "message.max.bytes": str(2 * 1024 * 1024),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def write_config(settings: Settings) -> Path:
    """Write server.properties and log4j2.properties; returns the properties path."""
    kdir = kafka_dir(settings)
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "log4j2.properties").write_text(LOG4J2)
    path = kdir / "server.properties"
    path.write_text(server_properties(settings))
    return path


def java_base(settings: Settings) -> list[str]:
    java = check_java(settings)
    return [str(java), f"-Dlog4j2.configurationFile={kafka_dir(settings) / 'log4j2.properties'}",
            "-cp", classpath(settings, "kafka")]


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as Uuid.toString)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(settings: Settings) -> bool:
    """Format the log dir on first start; False when it was formatted before."""
    props = write_config(settings)
    if (data_dir(settings) / "meta.properties").exists():
        return False
    cmd = [*java_base(settings), "kafka.tools.StorageTool", "format",
           "-t", random_cluster_id(), "-c", str(props), "--ignore-formatted"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise PlatformError(f"formatting Kafka storage in {data_dir(settings)} failed: {tail}",
                            f"remove {data_dir(settings)} if it is a leftover, then `dse up` again")
    return True


def command(settings: Settings) -> list[str]:
    """The broker's java command line (heap kept small for a 2-core laptop-sized machine)."""
    java, *rest = java_base(settings)
    return [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", *rest,
            "kafka.Kafka", str(kafka_dir(settings) / "server.properties")]
