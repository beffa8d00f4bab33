"""The demo shows only out-of-sample predictions: its model's cutoff is before the first replayed day."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pytest

from dse_platform.config import Settings
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from dse_platform.runtime import demo
from dse_platform.serving import database


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
    sqlite = Settings(_env_file=None, home=tmp_path, airflow_enabled=False)
    assert any("SQLite" in line and "DSE_DB_BACKEND=postgres make demo" in line
               for line in demo.header_lines(sqlite, 90))
    closing = "\n".join(demo.closing_lines(sqlite))
    assert "dse down" in closing and "Airflow" not in closing.split("Try next")[0]
    postgres = Settings(_env_file=None, home=tmp_path, db_backend="postgres")
    assert any("PostgreSQL" in line for line in demo.closing_lines(postgres))


def test_the_replay_waits_for_the_jobs_own_reloaded_event_of_the_new_version(tmp_path) -> None:
    """Only the streaming job's "reloaded" of this model and version counts: the demo's own promotion does not,
    nor another version or another model's."""
    settings = Settings(_env_file=None, home=tmp_path)
    engine = database.engine(settings)
    database.migrate(engine)
    database.record_event(engine, "promoted", settings.model_name, version="2", source="dse demo")
    database.record_event(engine, "reloaded", settings.model_name, version="1", source="stream")
    database.record_event(engine, "reloaded", "another-model", version="2", source="stream")
    assert not demo.model_loaded(settings, engine, "2")
    database.record_event(engine, "reloaded", settings.model_name, version="2", source="stream")
    assert demo.model_loaded(settings, engine, "2")


def test_a_job_that_never_loads_the_model_is_named_and_the_demo_goes_on(tmp_path, monkeypatch) -> None:
    """The timeout at 0 s (its default is 3 min): the demo says what happened and where to look, then replays."""
    settings = Settings(_env_file=None, home=tmp_path)
    engine = database.engine(settings)
    database.migrate(engine)
    monkeypatch.setattr(demo, "MODEL_LOAD_TIMEOUT_S", 0.0)
    said: list[str] = []
    demo.await_model(settings, engine, "7", said.append)
    assert len(said) == 1 and "has not loaded version 7" in said[0] and "dse logs stream" in said[0]


class _Stop(Exception):
    """Ends `demo.run` right after the services and the ingest, where these tests stop looking."""


def _stop_after_ingest(monkeypatch) -> None:
    def stop(*_args, **_kwargs):
        raise _Stop
    monkeypatch.setattr(demo.kafka_io, "ensure_topics", stop)


def test_the_ingest_runs_while_the_services_start(tmp_path, monkeypatch) -> None:
    """A fresh store is ingested during `dse up`'s start: each side waits for the other, so run in turn they'd
    time out (10 s)."""
    settings = Settings(_env_file=None, home=tmp_path, airflow_enabled=False)
    starting, ingested = threading.Event(), threading.Event()

    def up(_settings, echo) -> None:
        starting.set()
        assert ingested.wait(10), "the ingest did not run while the services started"
        echo("services: up")

    def ingest(_settings) -> str:
        assert starting.wait(10), "the ingest waited for the services"
        ingested.set()
        return "demo: ingested"

    monkeypatch.setattr(demo.supervisor, "up", up)
    monkeypatch.setattr(demo, "_ingest", ingest)
    _stop_after_ingest(monkeypatch)
    said: list[str] = []
    with pytest.raises(_Stop):
        demo.run(settings, said.append, print)
    assert said[-3:] == ["demo: the bar store is empty; ingesting the shipped DSE data while the services start",
                         "services: up", "demo: ingested"]


def test_a_failed_ingest_stops_the_demo_with_its_error(tmp_path, monkeypatch) -> None:
    settings = Settings(_env_file=None, home=tmp_path, airflow_enabled=False)

    def ingest(_settings) -> str:
        raise PlatformError("no .csv or .csv.gz files under data", "point `dse ingest` at the folder")

    monkeypatch.setattr(demo.supervisor, "up", lambda _settings, echo: echo("services: up"))
    monkeypatch.setattr(demo, "_ingest", ingest)
    _stop_after_ingest(monkeypatch)
    with pytest.raises(PlatformError, match=r"no \.csv or"):
        demo.run(settings, lambda _line: None, print)
