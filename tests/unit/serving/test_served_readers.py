"""Readers meaning "what was served" count production's rows only, whatever the challenger wrote beside them."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import pytest

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.orchestration import streaming
from dse_platform.runtime import demo
from dse_platform.serving import database

DAYS = [dt.date(2024, 1, 14), dt.date(2024, 1, 15), dt.date(2024, 1, 16)]


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("DSE_")]:
        monkeypatch.delenv(key)
    bars = pd.DataFrame({"symbol": "GP", "date": DAYS, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": 1.0, "trades": pd.array([1] * len(DAYS), dtype="Int64"), "value_mn": 0.1,
                         "sector": "Telecom", "category": "A", "quality_flags": "", "source_file": "GP.csv"})
    store.write_store(tmp_path / "store", bars, TradingCalendar(tuple(DAYS), ((DAYS[0], DAYS[-1]),)), {})
    return Settings(_env_file=None, DSE_STORE_DIR=tmp_path / "store", db_url=f"sqlite:///{tmp_path / 'serving.db'}")


def _predictions(settings: Settings, rows: list[tuple[str, dt.date]]) -> None:
    engine = database.engine(settings)
    database.migrate(engine)
    database.upsert(engine, tables.predictions, [
        {"symbol": "GP", "date": day, "probability": 0.5, "label": 1, "model_name": "dse-direction",
         "model_version": "1" if role == "production" else "2", "feature_version": "f", "produced_at": 0, "role": role}
        for role, day in rows])


def test_the_streaming_dags_check_counts_production_predictions_only(settings: Settings) -> None:
    # the challenger scored the range's last session; production did not get there
    _predictions(settings, [("production", DAYS[0]), ("production", DAYS[1]), ("challenger", DAYS[1]),
                            ("challenger", DAYS[2])])
    found = streaming.range_predictions(settings, DAYS[0], DAYS[-1])
    assert (found.count, found.last_session, found.on_last_session) == (2, DAYS[2], 0)
    assert not found.ready(1)


def test_the_demo_counts_and_shows_served_predictions(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.kafka_io, "records_in", lambda *_: 3)
    _predictions(settings, [("production", DAYS[0]), ("challenger", DAYS[0]), ("challenger", DAYS[1])])
    assert demo.progress(settings, database.engine(settings)).predictions == 1
    assert any("'challenger' alias" in line for line in demo.closing_lines(settings))
