"""The streaming query: Kafka -> parse -> per-instrument state -> sink, and how it runs."""

from __future__ import annotations

import logging

from dse_platform.config import Settings
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.runtime import jars
from dse_platform.serving import database
from dse_platform.serving.parsing import OUTPUT_FIELDS, PARSED_FIELDS, ddl, parse_batch
from dse_platform.serving.sink import BatchSink
from dse_platform.serving.state import make_state_function
from dse_platform.serving.watcher import ModelWatcher

log = logging.getLogger("dse.stream")


def spark_session(settings: Settings, app_name: str = "dse-stream-predict"):
    """One SparkSession for the job: master, the connector jars, small state partitions, Arrow."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.appName(app_name).master(settings.spark_master)
            .config("spark.jars", jars.jar_list(settings, "spark"))
            .config("spark.ui.port", str(settings.spark_ui_port))
            .config("spark.sql.shuffle.partitions", str(settings.stream_shuffle_partitions))
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.streaming.stateStore.providerClass",
                    "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
            .getOrCreate())


def build_query(spark, settings: Settings, calendar: TradingCalendar, sink: BatchSink):
    """The streaming query, not yet started."""
    from pyspark.sql.streaming.state import GroupStateTimeout

    bars_topic = settings.bars_topic
    raw = (spark.readStream.format("kafka")
           .option("kafka.bootstrap.servers", settings.bootstrap_servers)
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


def run(settings: Settings, calendar: TradingCalendar, timeout_s: float | None = None) -> None:
    """Run the job until it ends (available-now), ``timeout_s`` passes, or it is stopped."""
    from dse_platform.streams import kafka_io

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kafka_io.ensure_topics(settings)
    engine = database.engine(settings)
    database.create_schema(engine)
    watcher = ModelWatcher(settings, engine).start()
    producer = kafka_io.BulkProducer(settings, client_id="dse-stream")
    spark = spark_session(settings)
    query = build_query(spark, settings, calendar, BatchSink(settings, watcher, engine, producer)).start()
    log.warning("streaming from %s and %s; checkpoint %s; Spark UI %s", settings.bars_topic, settings.ticks_topic,
                settings.stream_checkpoint, spark.sparkContext.uiWebUrl)
    try:
        query.awaitTermination(timeout_s)
    finally:
        if query.isActive:
            query.stop()
        watcher.stop()
        spark.stop()
