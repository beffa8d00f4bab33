"""Streaming job throughput and latency, each beside a ceiling measured in the same run.

The job's own query (``job.build_query`` with its ``BatchSink``, model watchers for production and the
challenger, PostgreSQL and the predictions topic) runs in this process, so Spark's
StreamingQueryProgress of every micro-batch is read directly: records in and ``durationMs`` per phase.
Each repeat replays the same range of stored bars into fresh topics and writes into a fresh database.

1. ceiling: Spark's Kafka source into the no-op sink over those records (available-now, the job's
   maxOffsetsPerTrigger);
2. a bare stateful operator: the same source grouped by key into an identity function that reads and writes
   one string of state per key (as the job keeps its window), into the no-op sink: what Spark's Python state
   machinery costs by itself, with the job's ``applyInPandasWithState`` and with ``transformWithStateInPandas``
   (state API v2, on the RocksDB state store it requires);
3. the full job over the same records: sustained records/s = records over ``triggerExecution`` of the
   micro-batches after the first (which starts the Python workers and fills empty state);
4. latency at 1,000 records/s: the job on its processing-time trigger, a paced producer stamping
   ``produced_at``; produce-to-committed-row latency is when this process first sees each prediction
   in the database (polled every 50 ms) minus ``produced_at``; beside it, the duration of a
   micro-batch of one record (what every micro-batch costs however little it holds).

Never part of CI; figures are never asserted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text

from dse_platform.config import Settings, get_settings
from dse_platform.contracts.tables import CHALLENGER
from dse_platform.data import store
from dse_platform.serving import database, job
from dse_platform.serving.sink import BatchSink
from dse_platform.serving.watcher import ModelWatcher
from dse_platform.streams import kafka_io, replay

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, MemorySampler, platform

from tests.support.platform import fresh_database

END = dt.date(2025, 8, 25)
#: replayed range: QUICK ~90k bars (a micro-batch of 50,000 warming the state, then ~40,000 counted:
#: a counted batch of only 10,000 was mostly Spark's fixed cost per micro-batch), full ~210k
START = {True: dt.date(2024, 9, 1), False: dt.date(2023, 6, 1)}
RATE = 1_000
#: the name memory figures give this process's tree: Spark's driver JVM and Python workers, and the job's sink
STREAMING_JOB = "streaming job (Spark driver, Python workers, sink)"
MEMORY_DATA = ("the bench platform (no Airflow: `dse up --no-airflow`) while the full job streams, sampled each "
               "second, PSS of each service's process tree")
POLL_S = 0.05


def _fresh(settings: Settings) -> Settings:
    """Settings on new topics and a new database, with the job's own micro-batch size."""
    tag = uuid.uuid4().hex[:6]
    cfg = settings.model_copy(update={
        "bars_topic": f"bench-bars-{tag}", "ticks_topic": f"bench-ticks-{tag}",
        "predictions_topic": f"bench-pred-{tag}", "deadletter_topic": f"bench-dead-{tag}",
        "db_url": fresh_database(settings)})
    kafka_io.ensure_topics(cfg)
    return cfg


def _source(spark, cfg: Settings):
    return (spark.readStream.format("kafka").options(**kafka_io.spark_options(cfg))
            .option("subscribe", cfg.bars_topic).option("startingOffsets", "earliest")
            .option("maxOffsetsPerTrigger", str(cfg.stream_max_offsets)).load())


def sustained(progress: list[dict]) -> float:
    """Records/s over the micro-batches that read records, the first left out when there are others."""
    batches = [p for p in progress if p["numInputRows"] > 0]
    counted = batches[1:] if len(batches) > 1 else batches
    seconds = sum(p["durationMs"]["triggerExecution"] for p in counted) / 1000
    return sum(p["numInputRows"] for p in counted) / seconds


def _available_now(writer, checkpoint: Path) -> list[dict]:
    query = writer.option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start()
    query.awaitTermination()
    if query.exception():
        raise SystemExit(f"bench_stream: the query failed: {query.exception()}")
    return list(query.recentProgress)


def ceiling(spark, cfg: Settings, tmp: Path) -> float:
    """Records/s of the Kafka source into Spark's no-op sink."""
    return sustained(_available_now(_source(spark, cfg).writeStream.format("noop"), tmp / "ceiling"))


#: the state-store provider transformWithStateInPandas needs (the job's applyInPandasWithState runs on Spark's default)
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
PROVIDER_CONF = "spark.sql.streaming.stateStore.providerClass"
STATE_APIS = ("applyInPandasWithState", "transformWithStateInPandas")


def _bare_state_names(api: str) -> str:
    return f"bare {api} (identity, a string state read and written per key) -> no-op"


def bare_stateful(spark, cfg: Settings, tmp: Path, api: str) -> float:
    """Records/s of the Kafka source grouped by key through ``api`` with an identity function that reads and
    writes one string per key, as the job's window is: what Spark's Python state machinery costs by itself."""
    from pyspark.sql.streaming import StatefulProcessor
    from pyspark.sql.streaming.state import GroupStateTimeout

    schema = "key string, value binary, topic string, partition int, offset long"
    rows = _source(spark, cfg).selectExpr("CAST(key AS STRING) AS key", "value", "topic", "partition", "offset")
    if api == "applyInPandasWithState":
        def identity(_key: tuple, frames: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
            seen = int(state.get[0]) if state.exists else 0
            for frame in frames:
                seen += len(frame)
                yield frame
            state.update((str(seen),))

        grouped = rows.groupBy("key").applyInPandasWithState(
            identity, schema, "window string", "append", GroupStateTimeout.NoTimeout)
        return sustained(_available_now(grouped.writeStream.format("noop"), tmp / "stateful-apiws"))

    class Identity(StatefulProcessor):
        def init(self, handle) -> None:
            self.window = handle.getValueState("window", "window string")

        def handleInputRows(self, key, rows, timerValues) -> Iterator[pd.DataFrame]:
            seen = int(self.window.get()[0]) if self.window.exists() else 0
            for frame in rows:
                seen += len(frame)
                yield frame
            self.window.update((str(seen),))

        def close(self) -> None:
            return None

    grouped = rows.groupBy("key").transformWithStateInPandas(
        statefulProcessor=Identity(), outputStructType=schema, outputMode="Append", timeMode="None")
    spark.conf.set(PROVIDER_CONF, ROCKSDB)  # read when the query starts; its checkpoint keeps it after
    try:
        return sustained(_available_now(grouped.writeStream.format("noop"), tmp / "stateful-tws"))
    finally:
        spark.conf.unset(PROVIDER_CONF)


class Job:
    """The streaming job's query in this process, wired as `job.run` wires it, for Spark's progress."""

    def __init__(self, spark, cfg: Settings, checkpoint: Path) -> None:
        self.cfg = cfg.model_copy(update={"stream_checkpoint_override": checkpoint})
        engine = database.engine(self.cfg)
        self.watchers = [ModelWatcher(self.cfg, engine).start(),
                         ModelWatcher(self.cfg, engine, role=CHALLENGER).start()]
        self.producer = kafka_io.BulkProducer(self.cfg, "bench-stream")
        sink = BatchSink(self.cfg, self.watchers[0], engine, self.producer, challenger=self.watchers[1])
        calendar = store.read_calendar(self.cfg.store_dir)
        self.query = job.build_query(spark, self.cfg, calendar, sink).start()

    def stop(self) -> list[dict]:
        if self.query.isActive:
            self.query.stop()
        for watcher in self.watchers:
            watcher.stop()
        self.producer.close()
        return list(self.query.recentProgress)


def full_job(spark, cfg: Settings, tmp: Path) -> list[dict]:
    """Progress of the whole job over what the topic holds (available-now)."""
    run = Job(spark, cfg.model_copy(update={"stream_trigger": "available-now"}), tmp / "full")
    run.query.awaitTermination()
    if run.query.exception():
        raise SystemExit(f"bench_stream: the streaming job failed: {run.query.exception()}")
    return run.stop()


def _bar(code: str, day: dt.date, close: float, produced_at: int) -> bytes:
    return json.dumps({"symbol": code, "date": day.isoformat(), "open": close, "high": round(close * 1.01, 2),
                       "low": round(close * 0.99, 2), "close": close, "volume": 1000.0, "trades": 10,
                       "value_mn": None, "source": "bench", "produced_at": produced_at}).encode()


def latency(spark, cfg: Settings, tmp: Path, seconds: float, symbols: int = 400) -> tuple[np.ndarray, list[float]]:
    """Produce-to-committed-row latencies (ms) at RATE records/s, and the durations (ms) of one-record batches."""
    run = Job(spark, cfg.model_copy(update={"stream_trigger": "processing-time", "stream_interval_s": 0.0}),
              tmp / "latency")
    engine = database.engine(cfg)
    producer = kafka_io.BulkProducer(cfg, client_id="bench-latency")
    rng = np.random.default_rng(3)
    codes = [f"BENCH{i:03d}" for i in range(symbols)]
    price = dict.fromkeys(codes, 100.0)
    day = dt.date(2010, 1, 3)

    def send(code: str, stamp: int) -> None:
        price[code] = round(price[code] * float(np.exp(rng.normal(0, 0.02))), 2)
        producer.send(cfg.bars_topic, code, _bar(code, day, price[code], stamp))

    try:
        for _ in range(60):  # a full lookback for every instrument, so the paced bars are scored
            for code in codes:
                send(code, 0)
            day += dt.timedelta(days=1)
        producer.flush_or_fail()
        deadline = time.monotonic() + 600
        warm = Committed(engine, 0)
        while len(warm.seen) < symbols * 5 and time.monotonic() < deadline:
            warm.poll()
            time.sleep(1)
        started_ms = int(time.time() * 1000)
        committed = Committed(engine, started_ms)
        end = time.monotonic() + seconds
        sent = 0
        next_poll = 0.0
        while time.monotonic() < end:
            for code in codes:
                target = started_ms / 1000 + sent / RATE
                pause = target - time.time()
                if pause > 0:
                    time.sleep(pause)
                send(code, int(time.time() * 1000))
                sent += 1
                if time.monotonic() >= next_poll:
                    committed.poll()
                    next_poll = time.monotonic() + POLL_S
            day += dt.timedelta(days=1)
        producer.flush_or_fail()
        deadline = time.monotonic() + 120
        while len(committed.seen) < sent and time.monotonic() < deadline:
            committed.poll()
            time.sleep(POLL_S)
        last = run.query.lastProgress
        before = last["batchId"] if last else -1
        for _ in range(5):  # micro-batches of one record each
            send(codes[0], int(time.time() * 1000))
            producer.flush_or_fail()
            day += dt.timedelta(days=1)
            time.sleep(3)
    finally:
        producer.close()
        progress = run.stop()
    empty = [p["durationMs"]["triggerExecution"] for p in progress if p["batchId"] > before and p["numInputRows"] == 1]
    return committed.latencies(), empty


class Committed:
    """Predictions as this process first sees them committed: (symbol, date, produced_at) -> epoch ms seen."""

    QUERY = text("SELECT symbol, date, produced_at FROM predictions WHERE role = 'production' "
                 "AND produced_at >= :since")

    def __init__(self, engine, started_ms: int) -> None:
        self.engine, self.started_ms = engine, started_ms
        self.seen: dict[tuple, float] = {}
        self.newest = started_ms

    def poll(self) -> None:
        # a micro-batch commits every partition up to its end offsets, so rows produced well before the newest
        # seen one are seen already: 5 s of margin for a lagging partition keeps each poll small
        since = max(self.started_ms, self.newest - 5_000)
        with self.engine.connect() as conn:
            rows = conn.execute(self.QUERY, {"since": since}).fetchall()
        now = time.time() * 1000
        for key in rows:
            self.seen.setdefault(tuple(key), now)
            self.newest = max(self.newest, key[2])

    def latencies(self) -> np.ndarray:
        return np.array([at - key[2] for key, at in self.seen.items()], dtype=float)


def run(quick: bool) -> list[Figure]:
    """Throughput beside its two ceilings, then latency beside a one-record micro-batch."""
    settings = get_settings()
    start = START[quick]
    repeats = 1 if quick else 3
    spark = job.spark_session(settings, "dse-bench-stream")
    spark.sparkContext.setLogLevel("WARN")
    figures: dict[str, Figure] = {}
    try:
        for _ in range(repeats):
            cfg = _fresh(settings)
            sent = replay.replay(cfg, start, END, progress=False, echo=lambda _: None).bars
            data = (f"{sent:,} replayed bars ({start}..{END}), micro-batches of {cfg.stream_max_offsets:,}, "
                    f"{cfg.stream_shuffle_partitions} state partitions, PostgreSQL")
            with tempfile.TemporaryDirectory() as folder:
                tmp = Path(folder)
                top = ceiling(spark, cfg, tmp)
                bare = {api: bare_stateful(spark, cfg, tmp, api) for api in STATE_APIS}
                with MemorySampler(cfg, {STREAMING_JOB: os.getpid()}) as memory:
                    progress = full_job(spark, cfg, tmp)
            for service, mb in sorted(memory.peaks.items()):
                figures.setdefault(f"memory {service}", Figure(
                    "memory", f"peak PSS while streaming: {service}", "MB", MEMORY_DATA,
                    note=memory.note(service))).add(mb)
            figures.setdefault("memory total", Figure(
                "memory", "peak PSS while streaming: whole platform", "MB", MEMORY_DATA,
                goal="< 4,096 MB", note=memory.note())).add(memory.peak_total)
            figures.setdefault("ceiling", Figure("stream", "Kafka source -> no-op sink", "records/s", data)).add(top)
            for api, rate in bare.items():
                figures.setdefault(api, Figure("stream", _bare_state_names(api), "records/s", data,
                                               ceiling="Kafka source -> no-op sink")).add(rate)
            figures.setdefault("full", Figure(
                "stream", "full job sustained", "records/s", data, ceiling="Kafka source -> no-op sink",
                goal=">= 10% of the ceiling and >= 25,000 records/s")).add(sustained(progress))
            figures.setdefault("vs_bare", Figure(
                "stream", "full job sustained (vs bare stateful)", "records/s", data,
                ceiling=_bare_state_names("applyInPandasWithState"))).add(sustained(progress))
            counted = [p for p in progress if p["numInputRows"] > 0][1:] or progress
            for phase in ("addBatch", "latestOffset", "queryPlanning", "walCommit", "commitOffsets"):
                per_50k = [p["durationMs"].get(phase, 0) / p["numInputRows"] * 50 for p in counted]
                figures.setdefault(phase, Figure(
                    "stream", f"full job micro-batch phase {phase}", "s per 50k records", data,
                    note="addBatch holds parse, state, features, scoring, upserts, publish")).add(np.mean(per_50k))
        cfg = _fresh(settings)
        seconds, symbols = (10, 200) if quick else (60, 400)
        with tempfile.TemporaryDirectory() as folder:
            lat, empty = latency(spark, cfg, Path(folder), seconds, symbols)
        data = f"{len(lat):,} predictions at {RATE:,} records/s for {seconds} s, {symbols} instruments, PostgreSQL"
        one = Figure("stream", "micro-batch of one record", "ms", "5 batches of 1 record, after the paced run")
        for ms in empty:
            one.add(ms)
        p50 = Figure("stream", "produce-to-committed-row latency p50", "ms", data, ceiling=one.name,
                     goal="<= 500 ms", note=f"seen by polling every {POLL_S * 1000:.0f} ms")
        p99 = Figure("stream", "produce-to-committed-row latency p99", "ms", data, ceiling=one.name,
                     goal="<= 1,000 ms", note=f"seen by polling every {POLL_S * 1000:.0f} ms")
        if len(lat):
            p50.add(np.percentile(lat, 50))
            p99.add(np.percentile(lat, 99))
        return [*figures.values(), one, p50, p99]
    finally:
        spark.stop()


def main() -> None:
    quick = "--quick" in sys.argv
    with platform():
        for figure in run(quick):
            s = figure.summary()
            print(f"{figure.name:<60} {s.get('median', float('nan')):>12,.1f} {figure.unit} "
                  f"(load {figure.loads[-1] if figure.loads else float('nan'):.1f})")


if __name__ == "__main__":
    main()
