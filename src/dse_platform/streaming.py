"""The streaming job: Kafka bars and ticks -> per-instrument state -> features -> production model -> sinks.

Shape of one micro-batch::

    Kafka (bars, ticks) --mapInPandas--> parsed records (bad ones keyed to one dead-letter group)
      --groupBy(symbol).applyInPandasWithState--> new bars with their features, resolved outcomes,
                                                  dead letters (parse errors, duplicates, out of order)
      --foreachBatch (driver)--> score with the production model; upsert bars, features, predictions,
                                 outcomes, dead letters; publish predictions and dead letters to Kafka

State per instrument is the last ``features.LOOKBACK`` bars (JSON in the state
store), so features come from `features.compute` over exactly the bars the
offline trainer would use. Scoring happens in the driver on the batch's feature
rows: the model is one small logistic regression (vectorised, ~1 ms per
thousand rows), and a driver-side model means the alias can move without
restarting anything. Every sink write is an upsert on the natural key, so a
micro-batch replayed after a crash (same checkpointed state, same offsets)
changes nothing: exactly-once in effect.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dse_platform import features, jars, serving_db, validation
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.trading_calendar import TradingCalendar, today_dhaka

log = logging.getLogger("dse.stream")

#: group key of records that failed parsing: they pass through the state operator untouched
BAD_KEY = "\x00dead-letter"

PARSED_FIELDS = [
    ("symbol", "string"), ("date", "date"), ("open", "double"), ("high", "double"), ("low", "double"),
    ("close", "double"), ("volume", "double"), ("trades", "long"), ("value_mn", "double"), ("source", "string"),
    ("produced_at", "long"), ("kind", "string"), ("reason", "string"), ("field", "string"), ("raw", "binary"),
    ("topic", "string"), ("partition", "int"), ("offset", "long"),
]
OUTPUT_FIELDS = [
    *PARSED_FIELDS, ("final", "boolean"), ("features", "string"), ("valid", "boolean"),
    ("next_date", "date"), ("actual", "int"),
]
BAR_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume", "trades", "value_mn", "source",
               "produced_at"]


def _ddl(fields: list[tuple[str, str]]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in fields)


_PANDAS_TYPES = {"string": object, "binary": object, "date": object, "double": "float64", "long": "Int64",
                 "int": "Int32", "boolean": "boolean"}


def _typed(rows: list[dict[str, Any]] | pd.DataFrame, fields: list[tuple[str, str]]) -> pd.DataFrame:
    """A frame with exactly ``fields``, each in a dtype Arrow converts to the Spark type.

    All-null columns would otherwise come out float64 (NaN), which Spark cannot send as a string.
    """
    frame = pd.DataFrame(rows).reindex(columns=[name for name, _ in fields])
    for name, kind in fields:
        col = frame[name]
        if _PANDAS_TYPES[kind] is object:
            frame[name] = col.astype(object).where(col.notna(), None)
        else:
            frame[name] = col.astype(_PANDAS_TYPES[kind])
    return frame


# ---- executor side: parsing and per-instrument state ------------------------------------------------

def parse_batch(frames: Iterator[pd.DataFrame], bars_topic: str) -> Iterator[pd.DataFrame]:
    """mapInPandas body: raw Kafka rows -> parsed bars, or dead letters under BAD_KEY."""
    today = today_dhaka()
    for raw in frames:
        out = []
        for value, topic, partition, offset in zip(raw["value"], raw["topic"], raw["partition"], raw["offset"],
                                                   strict=True):
            kind = "bar" if topic == bars_topic else "tick"
            where = {"topic": topic, "partition": int(partition), "offset": int(offset)}
            try:
                bar = validation.parse(value, kind, today)
            except validation.Rejected as exc:
                out.append({"symbol": BAD_KEY, "kind": "bad", "reason": exc.reason, "field": exc.field,
                            "raw": value if value is None else bytes(value), **where})
                continue
            if bar is not None:
                out.append({**bar, "kind": kind, "raw": bytes(value), **where})
        yield _typed(out, PARSED_FIELDS)


def _dead(row: dict[str, Any], reason: str, field: str | None) -> dict[str, Any]:
    return {"symbol": row["symbol"], "kind": "bad", "reason": reason, "field": field, "raw": row["raw"],
            "topic": row["topic"], "partition": row["partition"], "offset": row["offset"]}


def advance(window: list[dict[str, Any]], rows: pd.DataFrame, calendar: TradingCalendar
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Apply one batch of an instrument's records to its window: (new window, output rows).

    Records apply in arrival order. Bars from the bars topic are final: a second one
    for a date in the window is a ``duplicate``, any other older than the window's
    last bar is ``out_of_order`` (a duplicate of a bar already evicted from the
    window is indistinguishable from that). A tick
    updates the bar-so-far of its date (or starts it); a final bar replaces it.
    Output: every bar added or changed, with its features, and the outcome of
    the previous bar whenever a final bar arrives for the next session.
    """
    bars = list(window)
    out: list[dict[str, Any]] = []
    changed: set[dt.date] = set()
    outcomes: list[dict[str, Any]] = []
    # arrival order per topic (bars first): the outcome must not depend on where batches split
    rows = rows.sort_values(["kind", "offset"], kind="stable")
    for row in rows.to_dict("records"):
        last = bars[-1] if bars else None
        record = {c: row[c] for c in BAR_COLUMNS}
        record["final"] = row["kind"] == "bar"
        if last is not None and row["date"] < last["date"]:
            seen = row["kind"] == "bar" and any(b["date"] == row["date"] and b["final"] for b in bars)
            out.append(_dead(row, "duplicate" if seen else "out_of_order", "date"))
            continue
        if last is not None and row["date"] == last["date"]:
            if last["final"]:
                if row["kind"] == "bar":
                    out.append(_dead(row, "duplicate", "date"))
                continue  # a tick after the day's final bar adds nothing
            if row["kind"] == "tick":
                record["open"] = last["open"]  # the page has no open: the day's first snapshot stands in
            bars[-1] = record
        else:
            if row["kind"] == "tick":
                record["open"] = record["open"] or record["close"]
            bars.append(record)
        changed.add(row["date"])
        if record["final"] and len(bars) >= 2 and bars[-2]["final"]:
            prev = bars[-2]
            nxt = calendar.next_session(prev["date"])
            if nxt == record["date"]:
                outcomes.append({"symbol": record["symbol"], "kind": "outcome", "date": prev["date"],
                                 "next_date": record["date"], "actual": int(record["close"] > prev["close"]),
                                 "close": prev["close"]})
    if changed:
        frame = pd.DataFrame(bars)
        feats = features.compute(frame)
        for i in np.flatnonzero(frame["date"].isin(changed).to_numpy()):
            bar = bars[i]
            valid = bool(feats.iloc[i]["valid"])
            out.append({**bar, "kind": "bar", "valid": valid,
                        "features": json.dumps(feats.iloc[i][features.FEATURE_NAMES].tolist()) if valid else None})
    return bars[-features.LOOKBACK:], out + outcomes


def _encode_window(bars: list[dict[str, Any]]) -> str:
    return json.dumps([{**b, "date": b["date"].isoformat()} for b in bars])


def _decode_window(text: str) -> list[dict[str, Any]]:
    return [{**b, "date": dt.date.fromisoformat(b["date"])} for b in json.loads(text)]


def make_state_function(calendar: TradingCalendar):
    """The applyInPandasWithState body, closing over the trading calendar."""
    def update(key: tuple, frames: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        rows = pd.concat(list(frames), ignore_index=True)
        if key[0] == BAD_KEY:
            yield _typed(rows, OUTPUT_FIELDS)
            return
        window = _decode_window(state.get[0]) if state.exists else []
        window, out = advance(window, rows, calendar)
        state.update((_encode_window(window),))
        yield _typed(out, OUTPUT_FIELDS)

    return update


# ---- driver side: the model, the sinks --------------------------------------------------------------

@dataclass
class LoadedModel:
    version: str
    model: Any


class ModelWatcher:
    """Follows the registry alias from a background thread; scoring reads `current` without waiting.

    A moved alias is loaded and swapped in (recorded as a ``reloaded`` model event);
    an unreachable registry keeps the last model and says so once per outage.
    """

    def __init__(self, settings: Settings, engine) -> None:
        self.settings, self.engine = settings, engine
        self.current: LoadedModel | None = None
        self._stop = threading.Event()
        self._outage = False
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> ModelWatcher:
        self.poll()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.stream_model_poll_s):
            self.poll()

    def poll(self) -> None:
        from dse_platform import registry

        try:
            ref = registry.production_ref(self.settings, registry.connect(self.settings))
        except Exception as exc:  # any registry failure (HTTP, MLflow, PlatformError): keep serving
            if not self._outage:
                held = self.current.version if self.current else "none"
                log.warning("registry unreachable (%s); keeping model version %s", exc, held)
                serving_db.record_event(self.engine, "registry_unreachable", self.settings.model_name,
                                        version=held if self.current else None, source="stream",
                                        details={"error": str(exc)[:500]})
            self._outage = True
            return
        if self._outage:
            log.warning("registry reachable again")
            self._outage = False
        if ref is None:
            if self.current is None:
                log.info("no %s model yet: storing bars, predictions start when one appears",
                         self.settings.model_alias)
            return
        if self.current is not None and self.current.version == ref.version:
            return
        try:
            model = registry.load(self.settings, ref)
        except PlatformError as exc:
            log.error("not switching to %s version %s: %s", ref.name, ref.version, exc)
            return
        previous = self.current.version if self.current else None
        self.current = LoadedModel(ref.version, model)
        log.warning("scoring with %s version %s (was %s)", ref.name, ref.version, previous)
        serving_db.record_event(self.engine, "reloaded", ref.name, version=ref.version, previous_version=previous,
                                source="stream", details={"found_by": ref.found_by})


class BatchSink:
    """foreachBatch body: score, upsert everything, publish, print one summary line."""

    def __init__(self, settings: Settings, watcher: ModelWatcher, engine, producer) -> None:
        self.settings, self.watcher, self.engine, self.producer = settings, watcher, engine, producer

    def __call__(self, batch, batch_id: int) -> None:
        started = time.perf_counter()
        frame = batch.toPandas()
        bad = frame[frame["kind"] == "bad"]
        bars = frame[frame["kind"] == "bar"]
        outcomes = frame[frame["kind"] == "outcome"]
        loaded = self.watcher.current
        scored = self._score(bars, loaded)
        with self.engine.begin() as conn:
            serving_db.upsert(conn, serving_db.bars, bars[BAR_COLUMNS])
            ready = bars[bars["valid"].fillna(False).astype(bool)]
            serving_db.upsert(conn, serving_db.features, pd.DataFrame({
                "symbol": ready["symbol"], "date": ready["date"], "feature_version": features.FEATURE_VERSION,
                "values": ready["features"]}))
            serving_db.upsert(conn, serving_db.predictions, scored)
            serving_db.upsert(conn, serving_db.prediction_outcomes, self._outcomes(conn, outcomes))
            serving_db.upsert(conn, serving_db.dead_letters, bad[["topic", "partition", "offset", "raw", "reason",
                                                                  "field"]])
        self._publish(scored, bad)
        log.warning("batch %d: %d in, %d bad, %d scored, model %s, %d outcomes, %.0f ms", batch_id,
                    len(bars) + len(bad), len(bad), len(scored),
                    f"v{loaded.version}" if loaded else "none", len(outcomes),
                    (time.perf_counter() - started) * 1000)

    def _score(self, bars: pd.DataFrame, loaded: LoadedModel | None) -> pd.DataFrame:
        ready = bars[bars["valid"].fillna(False).astype(bool)]
        if loaded is None or ready.empty:
            return pd.DataFrame(columns=[c.name for c in serving_db.predictions.columns if c.name != "scored_at"])
        matrix = np.array([json.loads(v) for v in ready["features"]], dtype=float)
        from dse_platform import registry

        p = registry.probabilities(loaded.model, pd.DataFrame(matrix, columns=features.FEATURE_NAMES))
        return pd.DataFrame({
            "symbol": ready["symbol"].to_numpy(), "date": ready["date"].to_numpy(), "probability": p,
            "label": (p >= 0.5).astype(int), "model_name": self.settings.model_name,
            "model_version": loaded.version, "feature_version": features.FEATURE_VERSION,
            "produced_at": ready["produced_at"].to_numpy()})

    def _outcomes(self, conn, outcomes: pd.DataFrame) -> pd.DataFrame:
        """Outcomes of bars that were scored: joined with their stored predictions."""
        if outcomes.empty:
            return pd.DataFrame()
        from sqlalchemy import select

        table = serving_db.predictions
        # a bounding query, then an exact join here: thousands of (symbol, date) pairs in one IN list
        # exceed PostgreSQL's expression depth
        stored = pd.DataFrame(conn.execute(
            select(table.c.symbol, table.c.date, table.c.probability, table.c.label, table.c.model_version)
            .where(table.c.symbol.in_(sorted(set(outcomes["symbol"]))),
                   table.c.date.between(outcomes["date"].min(), outcomes["date"].max()))).mappings().all())
        if stored.empty:
            return pd.DataFrame()
        merged = outcomes[["symbol", "date", "next_date", "actual"]].merge(stored, on=["symbol", "date"])
        merged["correct"] = merged["label"] == merged["actual"]
        return merged

    def _publish(self, scored: pd.DataFrame, bad: pd.DataFrame) -> None:
        if self.producer is None:
            return
        from dse_platform import kafka_io

        for row in scored.itertuples(index=False):
            value = json.dumps({"symbol": row.symbol, "date": str(row.date), "probability": float(row.probability),
                                "label": int(row.label), "model_name": row.model_name,
                                "model_version": row.model_version, "feature_version": row.feature_version,
                                "produced_at": int(row.produced_at), "scored_at": int(time.time() * 1000)})
            self.producer.send(self.settings.predictions_topic, row.symbol, value.encode())
        for row in bad.itertuples(index=False):
            raw = b"" if row.raw is None else bytes(row.raw)
            self.producer.send(self.settings.deadletter_topic, row.topic,
                               kafka_io.encode_deadletter(raw[:validation.MAX_VALUE_BYTES], row.reason,
                                                          "stream", row.topic, int(row.partition), int(row.offset)))
        self.producer.flush_or_fail()


# ---- the job ------------------------------------------------------------------------------------

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
    parsed = raw.mapInPandas(lambda frames: parse_batch(frames, bars_topic), _ddl(PARSED_FIELDS))
    updated = parsed.groupBy("symbol").applyInPandasWithState(
        make_state_function(calendar), _ddl(OUTPUT_FIELDS), "window string", "append",
        GroupStateTimeout.NoTimeout)
    writer = (updated.writeStream.foreachBatch(sink)
              .option("checkpointLocation", str(settings.stream_checkpoint))
              .queryName("dse-stream-predict"))
    if settings.stream_trigger == "available-now":
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{settings.stream_interval_s} seconds")


def submit_command(settings: Settings, *job_args: str) -> list[str]:
    """The spark-submit command line of the job (what `dse stream` runs)."""
    import sys
    from pathlib import Path

    return [str(Path(sys.executable).parent / "spark-submit"), "--master", settings.spark_master,
            "--jars", jars.jar_list(settings, "spark"), "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", f"spark.pyspark.driver.python={sys.executable}",
            str(settings.project_dir / "jobs" / "stream_predict.py"), *job_args]


def run(settings: Settings, calendar: TradingCalendar, timeout_s: float | None = None) -> None:
    """Run the job until it ends (available-now), ``timeout_s`` passes, or it is stopped."""
    from dse_platform import kafka_io

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kafka_io.ensure_topics(settings)
    engine = serving_db.engine(settings)
    serving_db.create_schema(engine)
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
