"""Daily monitoring is per session, reproducible, records each alert once, judges accuracy by the strongest baseline."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.monitoring import daily
from dse_platform.serving import database
from tests.unit.model.synthetic import random_bars


@pytest.fixture
def world(tmp_path) -> tuple[Settings, pd.DataFrame]:
    bars = pd.concat([random_bars(f"S{i}", 80, seed=i) for i in range(6)], ignore_index=True)
    days = sorted(bars["date"].unique())
    store.write_store(tmp_path / "store", bars.assign(trades=pd.array([None] * len(bars), dtype="Int64"),
                                                      value_mn=np.nan, sector=None, category=None,
                                                      quality_flags="", source_file="t"),
                      TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    settings = Settings(_env_file=None, DSE_STORE_DIR=tmp_path / "store", db_url=f"sqlite:///{tmp_path / 'db'}",
                        monitor_min_outcomes=50)  # the synthetic world has a few hundred outcomes, not thousands
    database.migrate(database.engine(settings))
    return settings, bars


def test_the_session_is_the_last_one_on_or_before_the_day(world) -> None:
    settings, bars = world
    days = sorted(bars["date"].unique())
    assert daily.session_for(settings, days[-1]) == days[-1]
    gap = next(d for d in (days[-1] - dt.timedelta(n) for n in range(1, 9)) if d not in set(days))
    assert daily.session_for(settings, gap) == max(d for d in days if d < gap)


def test_dead_letters_count_the_sessions_dhaka_day(world) -> None:
    settings, _ = world
    engine = database.engine(settings)
    day = dt.date(2025, 8, 25)
    # 23:30 UTC on the 24th is 05:30 on the 25th in Dhaka; 18:30 UTC on the 25th is already the 26th there
    stamps = [dt.datetime(2025, 8, 24, 23, 30, tzinfo=dt.UTC), dt.datetime(2025, 8, 25, 18, 30, tzinfo=dt.UTC)]
    database.upsert(engine, tables.dead_letters, [{"topic": "t", "partition": 0, "offset": i, "raw": b"x",
                                                   "reason": "invalid_json", "received_at": at}
                                                  for i, at in enumerate(stamps)])
    assert daily.dead_letter_counts(engine, day) == {"invalid_json": 1}


def _resolved(engine, bars: pd.DataFrame) -> pd.DataFrame:
    """The bars stored, and each one's actual next move (the last bar of each symbol has none yet)."""
    frame = bars.sort_values(["symbol", "date"])
    nxt = frame.groupby("symbol")["close"].shift(-1)
    frame = frame[nxt.notna()].assign(actual=(nxt > frame["close"]).astype(int)[nxt.notna()])
    database.upsert(engine, tables.bars, frame[["symbol", "date", "open", "high", "low", "close", "volume"]]
                    .assign(source="replay", produced_at=0))
    return frame


def _constant_outcomes(frame: pd.DataFrame, version: str, **role: str) -> list[dict]:
    """Outcomes of a model calling, for every bar, the constant that is NOT the majority: worse than "always the
    majority", though it may tie always-up."""
    label = 1 if int((frame["actual"] == 0).sum()) >= len(frame) / 2 else 0
    return [{"symbol": r.symbol, "date": r.date, "next_date": r.date, "probability": float(label), "label": label,
             "actual": int(r.actual), "correct": label == r.actual, "model_version": version, **role}
            for r in frame.itertuples()]


def test_a_constant_model_alerts_once_per_session_against_the_strongest_baseline(world) -> None:
    settings, bars = world
    engine = database.engine(settings)
    frame = _resolved(engine, bars)
    # written without a role, as before there was one: the database makes them production's
    database.upsert(engine, tables.prediction_outcomes, _constant_outcomes(frame, "c"))
    day = max(frame["date"])
    first = daily.run(settings.model_copy(update={"monitor_accuracy_days": 400}), day)
    second = daily.run(settings.model_copy(update={"monitor_accuracy_days": 400}), day)
    assert first.as_dict() == second.as_dict()
    assert any("live accuracy of version c" in a and "majority" in a for a in first.as_dict()["alerts"])
    events = database.read_events(engine, limit=100)
    assert len(events) == len(first.alerts) and (events["event"] == "alert").all()


def test_accuracy_is_reported_per_role_and_version_and_only_production_can_alert(world, caplog) -> None:
    settings, bars = world
    engine = database.engine(settings)
    frame = _resolved(engine, bars)
    served = [{"symbol": r.symbol, "date": r.date, "next_date": r.date, "probability": 0.9, "label": int(r.actual),
               "actual": int(r.actual), "correct": True, "model_version": "p", "role": "production"}
              for r in frame.itertuples()]
    database.upsert(engine, tables.prediction_outcomes, served + _constant_outcomes(frame, "c", role="challenger"))
    with caplog.at_level(logging.INFO, "dse.monitoring"):
        report = daily.run(settings.model_copy(update={"monitor_accuracy_days": 400}), max(frame["date"]))
    accuracy = report.accuracy
    assert accuracy[["role", "model_version", "outcomes"]].values.tolist() == [
        ["production", "p", len(frame)], ["challenger", "c", len(frame)]]
    assert accuracy["accuracy"][0] == 1.0 and accuracy["accuracy"][1] < accuracy["baseline_majority"][1]
    # the same bars, so the same baselines: the two roles are compared on equal terms
    assert accuracy["baseline_majority"][0] == accuracy["baseline_majority"][1]
    assert not [kind for kind, _ in report.alerts if kind.startswith("accuracy")]
    assert "live accuracy of challenger version c" in caplog.text
