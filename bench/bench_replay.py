"""Replay throughput vs Kafka's own producer performance tool, measured in the same run.

Needs the services (`dse up`) and a store (`dse ingest`). Prints bars/s of
`dse replay --speed max` over the whole shipped history and records/s of
org.apache.kafka.tools.ProducerPerformance sending the same number of records of
the same average size with acks=all, then their ratio. Never part of CI.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import uuid

from dse_platform.config import get_settings
from dse_platform.data import store
from dse_platform.runtime import broker
from dse_platform.streams import kafka_io, replay


def main() -> None:
    settings = get_settings()
    cfg = settings.model_copy(update={"bars_topic": f"bench-bars-{uuid.uuid4().hex[:6]}"})
    bars = store.read_bars(settings.store_dir, columns=replay.REPLAY_COLUMNS)
    sample = replay.encode_day(bars.drop(columns=["quality_flags"]).head(1000), 0)
    record_size = round(sum(len(v) for _, v in sample) / len(sample))
    result = replay.replay(cfg, progress=False)
    perf_topic = f"bench-perf-{uuid.uuid4().hex[:6]}"
    kafka_io.ensure_topics(settings, [perf_topic])
    java, *rest = broker.java_base(settings)
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as client:
        # a file, not --producer-props: a SASL login's JAAS value holds '=' signs
        client.write("".join(f"{k}={v}\n" for k, v in kafka_io.java_client_properties(settings).items()))
        client.flush()
        out = subprocess.run(
            [java, *rest, "org.apache.kafka.tools.ProducerPerformance", "--topic", perf_topic,
             "--num-records", str(result.bars), "--record-size", str(record_size), "--throughput", "-1",
             "--producer.config", client.name, "--producer-props", "acks=all",
             "enable.idempotence=true", "linger.ms=20", "batch.size=262144"],
            capture_output=True, text=True, check=True).stdout
    ceiling = float(re.findall(r"([\d.]+) records/sec", out)[-1])
    print(f"replay: {result.bars:,} bars ({result.days:,} trading days, ~{record_size} B each) "
          f"in {result.seconds:.1f}s = {result.bars_per_s:,.0f} bars/s")
    print(f"kafka ProducerPerformance, same count and size: {ceiling:,.0f} records/s")
    print(f"ratio replay/ceiling: {result.bars_per_s / ceiling:.3f}; goal (whole history < 20 s): "
          f"{'met' if result.seconds < 20 else 'not met'}")


if __name__ == "__main__":
    main()
