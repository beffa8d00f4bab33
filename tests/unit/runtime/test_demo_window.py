"""The demo shows only out-of-sample predictions: its model's cutoff is before the first replayed day."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.runtime import demo


def test_training_cutoff_is_before_the_first_replayed_day(tmp_path) -> None:
    days = pd.bdate_range("2023-01-01", "2025-06-30").date
    bars = pd.DataFrame({"symbol": "GP", "date": days, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": 1.0, "trades": pd.array([1] * len(days), dtype="Int64"), "value_mn": 0.1,
                         "sector": "Telecom", "category": "A", "quality_flags": "", "source_file": "GP.csv"})
    store.write_store(tmp_path / "store", bars, TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    settings = Settings(_env_file=None, DSE_STORE_DIR=tmp_path / "store")
    window = demo.replay_window(settings)
    assert window.end == dt.date(2025, 6, 30)
    assert window.cutoff < window.start and (window.end - window.start).days == demo.REPLAY_DAYS


def test_header_and_closing_say_which_database_and_how_to_switch(tmp_path) -> None:
    sqlite = Settings(_env_file=None, DSE_HOME=tmp_path, airflow_enabled=False)
    assert any("SQLite" in line and "DSE_DB_BACKEND=postgres make demo" in line
               for line in demo.header_lines(sqlite, 90))
    closing = "\n".join(demo.closing_lines(sqlite))
    assert "dse down" in closing and "Airflow" not in closing.split("Try next")[0]
    postgres = Settings(_env_file=None, DSE_HOME=tmp_path, db_backend="postgres")
    assert any("PostgreSQL" in line for line in demo.closing_lines(postgres))
