"""The foreachBatch body: score, upsert every table, publish predictions and dead letters."""

from __future__ import annotations

import logging
import time

import pandas as pd

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.contracts.records import DeadLetterRecord, PredictionRecord, epoch_ms
from dse_platform.model import features
from dse_platform.serving import database
from dse_platform.serving.parsing import BAR_COLUMNS
from dse_platform.serving.watcher import LoadedModel, ModelWatcher

log = logging.getLogger("dse.stream")


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
            database.upsert(conn, tables.bars, bars[BAR_COLUMNS])
            ready = bars[bars["valid"].fillna(False).astype(bool)]
            database.upsert(conn, tables.features, pd.DataFrame({
                "symbol": ready["symbol"], "date": ready["date"], "feature_version": features.FEATURE_VERSION,
                "values": ready["features"]}))
            database.upsert(conn, tables.predictions, scored)
            database.upsert(conn, tables.prediction_outcomes, self._outcomes(conn, outcomes))
            database.upsert(conn, tables.dead_letters, bad[["topic", "partition", "offset", "raw", "reason",
                                                                  "field"]])
        self._publish(scored, bad)
        log.warning("batch %d: %d in, %d bad, %d scored, model %s, %d outcomes, %.0f ms", batch_id,
                    len(bars) + len(bad), len(bad), len(scored),
                    f"v{loaded.version}" if loaded else "none", len(outcomes),
                    (time.perf_counter() - started) * 1000)

    def _score(self, bars: pd.DataFrame, loaded: LoadedModel | None) -> pd.DataFrame:
        ready = bars[bars["valid"].fillna(False).astype(bool)]
        if loaded is None or ready.empty:
            return pd.DataFrame(columns=[c.name for c in tables.predictions.columns if c.name != "scored_at"])
        from dse_platform.model import scoring

        p = scoring.probabilities(loaded.model, features.decode(ready["features"]))
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

        table = tables.predictions
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
        scored_at = epoch_ms()
        for row in scored.itertuples(index=False):
            prediction = PredictionRecord(
                symbol=row.symbol, date=row.date, probability=float(row.probability), label=int(row.label),
                model_name=row.model_name, model_version=row.model_version, feature_version=row.feature_version,
                produced_at=int(row.produced_at), scored_at=scored_at)
            self.producer.send(self.settings.predictions_topic, row.symbol, prediction.to_bytes())
        for row in bad.itertuples(index=False):
            letter = DeadLetterRecord.of(b"" if row.raw is None else bytes(row.raw), row.reason, "stream", row.topic,
                                         int(row.partition), int(row.offset))
            self.producer.send(self.settings.deadletter_topic, row.topic, letter.to_bytes())
        self.producer.flush_or_fail()
