"""Streaming job throughput and latency, against a ceiling measured in the same run.

Needs the services (`dse up`), the jars, a store and a production model (`make demo` leaves
all of these). Three measurements on this machine, each on fresh topics:

1. ceiling: Spark's Kafka source into the no-op sink (available-now) over N replayed bars;
2. the full job (available-now) over the same bars: sustained records/s, and its ratio to 1.;
3. latency at 1,000 records/s: a paced producer stamps ``produced_at``; the job's
   processing-time trigger scores them; produce-to-committed-row latency is
   ``scored_at - produced_at`` of each stored prediction, reported as p50/p99.

Goals (issue 5): sustained >= 10% of the ceiling; p50 <= 500 ms, p99 <= 1,000 ms at 1k rec/s.
Never part of CI.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from dse_platform.config import Settings, get_settings
from dse_platform.runtime import spark
from dse_platform.serving import database, job
from dse_platform.streams import kafka_io, replay

BENCH_START, BENCH_END = dt.date(2022, 1, 1), dt.date(2025, 8, 25)


def _topics(settings: Settings) -> Settings:
    tag = uuid.uuid4().hex[:6]
    cfg = settings.model_copy(update={"bars_topic": f"bench-bars-{tag}", "ticks_topic": f"bench-ticks-{tag}",
                                      "predictions_topic": f"bench-pred-{tag}",
                                      "deadletter_topic": f"bench-dead-{tag}"})
    kafka_io.ensure_topics(cfg)
    return cfg


def _env(cfg: Settings, tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "DSE_BARS_TOPIC": cfg.bars_topic,
            "DSE_TICKS_TOPIC": cfg.ticks_topic, "DSE_PREDICTIONS_TOPIC": cfg.predictions_topic,
            "DSE_DEADLETTER_TOPIC": cfg.deadletter_topic, "DSE_DB_URL": f"sqlite:///{tmp / 'serving.db'}",
            "DSE_STREAM_CHECKPOINT": str(tmp / "checkpoint"), **extra}


def ceiling(cfg: Settings, records: int) -> float:
    """Records/s of the Kafka source into Spark's no-op sink over the topic."""
    spark = job.spark_session(cfg, "dse-bench-ceiling")
    with tempfile.TemporaryDirectory() as tmp:
        frame = (spark.readStream.format("kafka").options(**kafka_io.spark_options(cfg))
                 .option("subscribe", cfg.bars_topic).option("startingOffsets", "earliest")
                 .option("maxOffsetsPerTrigger", str(cfg.stream_max_offsets)).load())
        started = time.perf_counter()
        query = (frame.writeStream.format("noop").option("checkpointLocation", tmp).trigger(availableNow=True)
                 .start())
        query.awaitTermination()
        seconds = time.perf_counter() - started
    spark.stop()
    return records / seconds


def full_job(cfg: Settings, tmp: Path) -> tuple[float, int]:
    """Sustained records/s of the whole job, from its per-batch log lines (startup excluded)."""
    proc = subprocess.run(spark.submit_command(cfg, "--trigger", "available-now"), env=_env(cfg, tmp),
                          capture_output=True, text=True, check=True)
    batches = re.findall(r"batch \d+: (\d+) in, .* (\d+) ms", proc.stderr)
    rows = sum(int(n) for n, _ in batches)
    seconds = sum(int(ms) for _, ms in batches) / 1000
    stamps = re.findall(r"^(\S+ \S+),\d+ dse.stream WARNING batch", proc.stderr, re.M)
    if len(stamps) >= 2:
        first = dt.datetime.fromisoformat(stamps[0])
        seconds = max(seconds, (dt.datetime.fromisoformat(stamps[-1]) - first).total_seconds())
    return rows / seconds, len(batches)


def latency(cfg: Settings, tmp: Path, rate: int = 1000, seconds: int = 60, symbols: int = 400) -> np.ndarray:
    """Produce-to-committed-row latency (ms) of predictions at ``rate`` records/s."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = _env(cfg, tmp, DSE_STREAM_INTERVAL_S="0")
    job = subprocess.Popen(spark.submit_command(cfg), env=env, stdout=subprocess.DEVNULL,
                           stderr=open(tmp / "job.log", "w"), start_new_session=True)  # noqa: SIM115
    prod = kafka_io.BulkProducer(cfg, client_id="bench-latency")
    rng = np.random.default_rng(3)
    codes = [f"BENCH{i:03d}" for i in range(symbols)]
    price = dict.fromkeys(codes, 100.0)
    day = dt.date(2010, 1, 3)

    def send_day(stamp: bool) -> None:
        for code in codes:
            price[code] *= float(np.exp(rng.normal(0, 0.02)))
            close = round(price[code], 2)
            value = {"symbol": code, "date": day.isoformat(), "open": close, "high": round(close * 1.01, 2),
                     "low": round(close * 0.99, 2), "close": close, "volume": float(rng.integers(1, 10_000)),
                     "trades": 10, "value_mn": None, "source": "bench",
                     "produced_at": int(time.time() * 1000) if stamp else 0}
            prod.send(cfg.bars_topic, code, json.dumps(value).encode())
            if stamp:
                time.sleep(1 / rate)

    try:
        for _ in range(60):  # warm-up: a full lookback for every instrument
            send_day(False)
            day += dt.timedelta(days=1)
        prod.flush_or_fail()
        engine = database.engine(Settings(_env_file=None, db_url=env["DSE_DB_URL"]))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                done = database.read_frame(engine, "SELECT count(*) AS n FROM predictions")["n"][0]
            except Exception:  # the job has not created its tables yet
                continue
            if done >= symbols * 10:
                break
        started_ms = int(time.time() * 1000)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            send_day(True)
            day += dt.timedelta(days=1)
            prod.flush_or_fail()
        time.sleep(15)
        frame = database.read_frame(engine, "predictions")
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    frame = frame[frame["produced_at"] >= started_ms]
    scored = frame["scored_at"].map(lambda t: t.timestamp() * 1000)
    return (scored - frame["produced_at"]).to_numpy(float)


def main() -> None:
    settings = get_settings()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        cfg = _topics(settings)
        sent = replay.replay(cfg, BENCH_START, BENCH_END, progress=False, echo=lambda _: None).bars
        top = ceiling(cfg, sent)
        rate, batches = full_job(cfg, tmp / "full")
        print(f"ceiling (Kafka source -> no-op sink, {sent:,} bars): {top:,.0f} records/s")
        print(f"full job ({batches} micro-batches): {rate:,.0f} records/s = {rate / top:.1%} of the ceiling "
              f"(goal >= 10%: {'met' if rate >= 0.1 * top else 'not met'})")
        lat = latency(_topics(settings), tmp / "latency")
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"latency at 1,000 records/s ({len(lat):,} predictions): p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
              f"(goals 500 / 1,000 ms: {'met' if p50 <= 500 and p99 <= 1000 else 'not met'})")


if __name__ == "__main__":
    main()
