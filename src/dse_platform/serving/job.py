"""The streaming query: Kafka -> parse -> per-instrument state -> sink, and how it runs."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dse_platform.config import Settings
from dse_platform.contracts.tables import CHALLENGER
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from dse_platform.runtime.spark import APP_NAME, spark_conf, spark_env
from dse_platform.serving import database
from dse_platform.serving.parsing import OUTPUT_FIELDS, PARSED_FIELDS, ddl, parse_batch
from dse_platform.serving.sink import BatchSink
from dse_platform.serving.state import make_state_function
from dse_platform.serving.watcher import ModelWatcher
from dse_platform.streams import kafka_io

log = logging.getLogger("dse.stream")


def spark_session(settings: Settings, app_name: str = APP_NAME):
    """One SparkSession with the confs every launch of the job shares (runtime.spark)."""
    from pyspark.sql import SparkSession

    # read only when this process starts Spark's JVM itself (not under spark-submit)
    os.environ.update(spark_env(settings))
    return SparkSession.builder.appName(app_name).master(settings.spark_master).config(
        map=spark_conf(settings)).getOrCreate()


def build_query(spark, settings: Settings, calendar: TradingCalendar, sink: BatchSink):
    """The streaming query, not yet started."""
    from pyspark.sql.streaming.state import GroupStateTimeout

    bars_topic = settings.bars_topic
    raw = (spark.readStream.format("kafka")
           .options(**kafka_io.spark_options(settings))
           .option("subscribe", f"{settings.bars_topic},{settings.ticks_topic}")
           .option("startingOffsets", "earliest")
           .option("maxOffsetsPerTrigger", str(settings.stream_max_offsets))
           .load()
           .select("value", "topic", "partition", "offset"))
    parsed = raw.mapInPandas(lambda frames: parse_batch(frames, bars_topic), ddl(PARSED_FIELDS))
    updated = parsed.groupBy("symbol").applyInPandasWithState(
        make_state_function(calendar), ddl(OUTPUT_FIELDS), "window string", "append",
        GroupStateTimeout.NoTimeout)
    writer = (updated.writeStream.foreachBatch(sink)
              .option("checkpointLocation", str(settings.stream_checkpoint))
              .queryName("dse-stream-predict"))
    if settings.stream_trigger == "available-now":
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{settings.stream_interval_s} seconds")


@contextmanager
def checkpoint_owner(checkpoint: Path) -> Iterator[None]:
    """Hold ``<checkpoint>.lock`` while a query runs on it: two queries on one checkpoint corrupt its state."""
    lock = checkpoint.with_name(checkpoint.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = lock.read_text().strip() or "?"
            raise PlatformError(
                f"the checkpoint {checkpoint} is in use by another streaming job (pid {holder} holds {lock})",
                "stop that job first (`dse down` stops the background one), or give this run its own checkpoint "
                "with DSE_STREAM_CHECKPOINT") from exc
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def configure_logging() -> None:
    """The job's progress at INFO (visible by default); the client libraries only when they warn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("py4j", "kafka", "urllib3", "httpx", "alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(settings: Settings, calendar: TradingCalendar, timeout_s: float | None = None) -> None:
    """Run the job until it ends (available-now), ``timeout_s`` passes, or it is stopped."""
    from dse_platform.streams import kafka_io

    configure_logging()
    with checkpoint_owner(settings.stream_checkpoint):
        kafka_io.ensure_topics(settings)
        engine = database.engine(settings)
        database.migrate(engine)
        watcher = ModelWatcher(settings, engine).start()
        # an empty DSE_CHALLENGER_ALIAS turns shadow scoring off; an unset alias only leaves it idle
        challenger = ModelWatcher(settings, engine, role=CHALLENGER).start() if settings.challenger_alias else None
        producer = kafka_io.BulkProducer(settings, client_id="dse-stream")
        spark = spark_session(settings)
        sink = BatchSink(settings, watcher, engine, producer, challenger=challenger)
        query = build_query(spark, settings, calendar, sink).start()
        log.info("streaming from %s and %s; checkpoint %s; Spark UI %s", settings.bars_topic,
                    settings.ticks_topic, settings.stream_checkpoint, spark.sparkContext.uiWebUrl)
        try:
            query.awaitTermination(timeout_s)
        finally:
            if query.isActive:
                query.stop()
            for each in (watcher, challenger):
                if each is not None:
                    each.stop()
            spark.stop()
