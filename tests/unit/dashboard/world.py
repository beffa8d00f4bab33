"""A constructed serving database for the dashboard's tests, written with the upserts the stream's sink uses.

Random-walk bars for a few real trading codes and the three indices, the features the stream
would have stored, production predictions for every valid bar (a challenger's for the last
sessions), their outcomes where the next bar exists, hostile dead letters, and model events.
The frames are kept so tests compare what the dashboard shows with what was written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.model import features
from dse_platform.serving import database
from dse_platform.serving.parsing import BAR_COLUMNS
from tests.unit.model.synthetic import random_bars

CODES = ("GP", "BRACBANK", "BATBC", "SQURPHARMA", "BEXIMCO")
INDICES = ("00DSEX", "00DSES", "00DS30")
INJECTION = "x'; DROP TABLE predictions; --"
MODEL = "dse-direction"
#: the last sessions the challenger scored in shadow
CHALLENGER_SESSIONS = 10
#: dead letters of the reason with more than one page of samples
BAD_NUMBERS = 25
#: a dead letter no page may render as markup: a script tag, a NUL, an invalid UTF-8 byte, a newline, RTL override
HOSTILE_RAW = b'{"symbol": "<script>alert(1)</script>", "close": "\x00\xff"}\n\xe2\x80\xaeevil'
NIGHTLY_SOURCE = "nightly retrain 2024-04-01"


@dataclass
class World:
    bars: pd.DataFrame
    features: pd.DataFrame
    predictions: pd.DataFrame
    outcomes: pd.DataFrame
    dead_letters: pd.DataFrame

    @property
    def sessions(self) -> list[dt.date]:
        return sorted(self.bars["date"].unique())


def make(sessions: int = 70, seed: int = 7, codes: tuple[str, ...] = CODES) -> World:
    """A small market: ``sessions`` sessions of ``codes`` and the indices, scored where the features are valid."""
    symbols = (*codes, *INDICES)
    bars = pd.concat([random_bars(code, sessions, seed=seed + i) for i, code in enumerate(symbols)],
                     ignore_index=True)
    index_rows = bars["symbol"].isin(INDICES)
    bars.loc[index_rows, ["open", "high", "low", "close"]] *= 50  # index points, not taka
    now_ms = int(time.time() * 1000)
    rng = np.random.default_rng(seed)
    bars = bars.assign(trades=rng.integers(10, 5_000, len(bars)), value_mn=(bars["close"] * bars["volume"] / 1e6),
                       source="replay", produced_at=now_ms - rng.integers(200, 3_000, len(bars)))
    computed = features.compute(bars)
    valid = bars[computed["valid"].to_numpy()]
    stored = pd.DataFrame({"symbol": valid["symbol"], "date": valid["date"],
                           "feature_version": features.FEATURE_VERSION,
                           "values": [features.encode(row) for _, row in computed[computed["valid"]].iterrows()]})
    p = 1 / (1 + np.exp(-(computed.loc[valid.index, "ret_5"] * 8 - 0.4)))
    production = _predictions(valid, p.to_numpy(), "production", "3")
    shadow = valid[valid["date"] >= sorted(valid["date"].unique())[-CHALLENGER_SESSIONS]]
    challenger = _predictions(shadow, np.clip(p[shadow.index].to_numpy() + 0.05, 0, 1), "challenger", "4")
    predictions = pd.concat([production, challenger], ignore_index=True)
    return World(bars, stored, predictions, _outcomes(bars, predictions), _dead_letters())


def _predictions(bars: pd.DataFrame, p: np.ndarray, role: str, version: str) -> pd.DataFrame:
    return pd.DataFrame({"symbol": bars["symbol"].to_numpy(), "date": bars["date"].to_numpy(), "probability": p,
                         "label": (p >= 0.5).astype(int), "model_name": MODEL, "model_version": version,
                         "feature_version": features.FEATURE_VERSION, "produced_at": bars["produced_at"].to_numpy(),
                         "role": role})


def _outcomes(bars: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Each prediction against its instrument's next bar, as the sink resolves them."""
    ordered = bars.sort_values(["symbol", "date"])
    following = ordered.assign(next_date=ordered.groupby("symbol")["date"].shift(-1),
                               next_close=ordered.groupby("symbol")["close"].shift(-1))
    merged = predictions.merge(following[["symbol", "date", "close", "next_date", "next_close"]],
                               on=["symbol", "date"]).dropna(subset=["next_date"])
    actual = (merged["next_close"] > merged["close"]).astype(int)
    return pd.DataFrame({"symbol": merged["symbol"], "date": merged["date"], "next_date": merged["next_date"],
                         "probability": merged["probability"], "label": merged["label"], "actual": actual,
                         "correct": merged["label"] == actual, "model_version": merged["model_version"],
                         "role": merged["role"]})


def _dead_letters() -> pd.DataFrame:
    rows = [{"topic": "dse.bars.v1", "partition": 0, "offset": 1_000 + i,
             "raw": b'{"symbol": "GP", "close": "1e999"}', "raw_size": 34, "reason": "bad_number", "field": "close"}
            for i in range(BAD_NUMBERS)]
    rows += [{"topic": "dse.bars.v1", "partition": 1, "offset": 7, "raw": HOSTILE_RAW, "raw_size": 9_000,
              "reason": "invalid_json", "field": None},
             {"topic": "dse.ticks.v1", "partition": 2, "offset": 3, "raw": None, "raw_size": None,
              "reason": "not_utf8", "field": None}]
    return pd.DataFrame(rows)


def write(engine: Engine, world: World) -> None:
    """Migrate, then write every table as the sink does (upserts), and the model events as the platform does."""
    database.migrate(engine)
    with engine.begin() as conn:
        database.upsert(conn, tables.bars, world.bars[BAR_COLUMNS])
        database.upsert(conn, tables.features, world.features)
        database.upsert(conn, tables.predictions, world.predictions)
        database.upsert(conn, tables.prediction_outcomes, world.outcomes)
        database.upsert(conn, tables.dead_letters, world.dead_letters)
    database.record_event(engine, "promoted", MODEL, version="3", source="dse promote",
                          details={"reason": "roc_auc 0.6100 beats both baselines"})
    database.record_event(engine, "reloaded", MODEL, version="3", source="stream", details={"found_by": "alias"})
    database.record_event(engine, "held", MODEL, version="4", previous_version="3", source=NIGHTLY_SOURCE,
                          details={"reason": "roc_auc 0.5900 does not beat version 3's 0.6100 by the margin 0"})
    database.record_event(engine, "alert", MODEL, source="monitoring",
                          details={"alert": "feature drift: PSI of flat_share_20 is 0.310 > 0.25", "kind": "drift"})


def write_store(world: World, path: Path) -> Path:
    """The world's bars as the canonical store (drift reads its reference sessions there)."""
    days = world.sessions
    stored = world.bars[["symbol", "date", "open", "high", "low", "close", "volume"]].assign(
        trades=pd.array(world.bars["trades"], dtype="Int64"), value_mn=world.bars["value_mn"], sector=None,
        category=None, quality_flags="", source_file="test")
    store.write_store(path, stored, TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    return path


def checkpoint_batch(root: Path, batch: int, started_ms: int, offsets: dict, committed_ms: int | None) -> None:
    """One micro-batch in a checkpoint laid out as Spark writes it: its offsets file and, once done, its commit."""
    (root / "offsets").mkdir(parents=True, exist_ok=True)
    (root / "commits").mkdir(parents=True, exist_ok=True)
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": started_ms, "conf": {"spark.sql.shuffle.partitions": "2"}}
    (root / "offsets" / str(batch)).write_text("\n".join(["v1", json.dumps(meta), json.dumps(offsets), "-"]))
    (root / "offsets" / f".{batch}.crc").write_bytes(b"crc")
    if committed_ms is not None:
        commit = root / "commits" / str(batch)
        commit.write_text('v1\n{"nextBatchWatermarkMs":0}')
        os.utime(commit, ns=(committed_ms * 1_000_000, committed_ms * 1_000_000))


def write_checkpoint(root: Path, batches: int = 12, records: int = 5_000) -> Path:
    """A stream checkpoint of ``batches`` committed micro-batches of about ``records`` bars each, ending now."""
    now = int(time.time() * 1000)
    for batch in range(batches):
        started = now - (batches - batch) * 10_000
        checkpoint_batch(root, batch, started, {"dse.bars.v1": {"0": batch * records}}, started + 6_000 + batch * 100)
    return root
