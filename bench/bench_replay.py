"""Replay throughput vs Kafka's own producer performance tool, measured in the same run.

Needs the services (`dse up`) and a store (`dse ingest`). Prints bars/s of
`dse replay --speed max` over the whole shipped history and records/s of
org.apache.kafka.tools.ProducerPerformance sending the same number of records of
the same average size with acks=all, then their ratio. Never part of CI.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from dse_platform.config import Settings, get_settings
from dse_platform.data import store
from dse_platform.runtime import broker
from dse_platform.streams import kafka_io, replay

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, platform

#: QUICK replays the bars from this date on (~115k) instead of the whole history
QUICK_START = dt.date(2024, 6, 1)


def record_size(settings: Settings) -> int:
    """Average bytes of a replayed record, from the first 1,000 stored bars."""
    bars = store.read_bars(settings.store_dir, columns=replay.REPLAY_COLUMNS)
    sample = replay.encode_day(bars.drop(columns=["quality_flags"]).head(1000), 0)
    return round(sum(len(v) for _, v in sample) / len(sample))


def producer_performance(settings: Settings, records: int, size: int) -> float:
    """Records/s of Kafka's own ProducerPerformance tool, acks=all and idempotent like replay."""
    topic = f"bench-perf-{uuid.uuid4().hex[:6]}"
    kafka_io.ensure_topics(settings, [topic])
    java, *rest = broker.java_base(settings)
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as client:
        # a file, not --producer-props: a SASL login's JAAS value holds '=' signs
        client.write("".join(f"{k}={v}\n" for k, v in kafka_io.java_client_properties(settings).items()))
        client.flush()
        out = subprocess.run(
            [java, *rest, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
             "--num-records", str(records), "--record-size", str(size), "--throughput", "-1",
             "--producer.config", client.name, "--producer-props", "acks=all",
             "enable.idempotence=true", "linger.ms=20", "batch.size=262144"],
            capture_output=True, text=True, check=True).stdout
    return float(re.findall(r"([\d.]+) records/sec", out)[-1])


def run(quick: bool) -> list[Figure]:
    """Replay's bars/s beside ProducerPerformance's records/s, each repeat on fresh topics."""
    settings = get_settings()
    size = record_size(settings)
    start = QUICK_START if quick else None
    scope = f"bars from {start}" if quick else "the whole shipped history"
    figures: list[Figure] = []
    for _ in range(2 if quick else 3):
        cfg = settings.model_copy(update={"bars_topic": f"bench-bars-{uuid.uuid4().hex[:6]}"})
        result = replay.replay(cfg, start, None, progress=False, echo=lambda _: None)
        data = f"{result.bars:,} bars ({scope}, {result.days:,} trading days), ~{size} B each"
        if not figures:
            figures = [Figure("replay", "Kafka ProducerPerformance (same count and size, acks=all)", "records/s",
                              data),
                       Figure("replay", "dse replay --speed max", "records/s", data,
                              ceiling="Kafka ProducerPerformance (same count and size, acks=all)",
                              goal=">= 0.8 of the ceiling"),
                       Figure("replay", "dse replay --speed max, wall time", "s", data,
                              goal="whole history < 20 s" if not quick else "")]
        figures[1].add(result.bars_per_s)
        figures[2].add(result.seconds)
        figures[0].add(producer_performance(settings, result.bars, size))
    return figures


def main() -> None:
    with platform():
        for figure in run("--quick" in sys.argv):
            print(f"{figure.name}: median {figure.summary()['median']:,.1f} {figure.unit} (load {figure.loads[-1]})")


if __name__ == "__main__":
    main()
