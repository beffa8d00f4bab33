"""Daily monitoring is per session, reproducible, records each alert once, judges live AUC by ex-ante baselines."""

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
from dse_platform.monitoring import daily, live
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


#: DSE_MONITOR_LIVE_DAYS for the synthetic world: its 80 sessions span about 110 days, and each test judges all of
#: them (the default 30 days is what the month test and the DAG test run with)
ALL_DAYS = 400


def _resolved(engine, bars: pd.DataFrame) -> pd.DataFrame:
    """The bars stored, each with an outcome equal to its own move: a market where yesterday's sign is always right.

    So the ex-ante baseline has all the skill there is, and a model without it is measurably worse.
    """
    frame = bars.sort_values(["symbol", "date"])
    moved = frame.groupby("symbol")["close"].diff()
    frame = frame[moved.notna()].assign(actual=(moved > 0).astype(int)[moved.notna()])
    database.upsert(engine, tables.bars, bars[["symbol", "date", "open", "high", "low", "close", "volume"]]
                    .assign(source="replay", produced_at=0))
    return frame


def _outcomes(frame: pd.DataFrame, version: str, probability: pd.Series | float, **role: str) -> list[dict]:
    probability = pd.Series(probability, index=frame.index, dtype=float)
    return [{"symbol": r.symbol, "date": r.date, "next_date": r.date, "probability": p, "label": int(p >= 0.5),
             "actual": int(r.actual), "correct": int(p >= 0.5) == r.actual, "model_version": version, **role}
            for r, p in zip(frame.itertuples(), probability, strict=True)]


def test_a_model_without_skill_alerts_once_per_session_against_the_strongest_baseline(world) -> None:
    settings, bars = world
    engine = database.engine(settings)
    frame = _resolved(engine, bars)
    # written without a role, as before there was one: the database makes them production's
    database.upsert(engine, tables.prediction_outcomes, _outcomes(frame, "c", 0.9))
    day = max(frame["date"])
    first = daily.run(settings.model_copy(update={"monitor_live_days": ALL_DAYS}), day)
    second = daily.run(settings.model_copy(update={"monitor_live_days": ALL_DAYS}), day)
    assert first.as_dict() == second.as_dict()
    live = first.live.iloc[0]
    assert live["auc"] == 0.5 and live["auc_yesterday_sign"] == 1.0 and live["strongest"] == "yesterday_sign"
    assert live["edge_high"] < 0
    assert any("live per-date AUC of version c" in a and "yesterday sign" in a for a in first.as_dict()["alerts"])
    events = database.read_events(engine, limit=100)
    assert len(events) == len(first.alerts) and (events["event"] == "alert").all()


def test_live_performance_is_reported_per_role_and_version_and_only_production_can_alert(world, caplog) -> None:
    settings, bars = world
    engine = database.engine(settings)
    frame = _resolved(engine, bars)
    database.upsert(engine, tables.prediction_outcomes, _outcomes(frame, "p", frame["actual"] * 0.8 + 0.1,
                                                                  role="production")
                    + _outcomes(frame, "c", 0.9, role="challenger"))
    with caplog.at_level(logging.INFO, "dse.monitoring"):
        report = daily.run(settings.model_copy(update={"monitor_live_days": ALL_DAYS}), max(frame["date"]))
    live = report.live
    assert live[["role", "model_version", "outcomes"]].values.tolist() == [
        ["production", "p", len(frame)], ["challenger", "c", len(frame)]]
    assert live["auc"].tolist() == [1.0, 0.5] and live["accuracy"][0] == 1.0
    # the same bars, so the same baselines: the two roles are compared on equal terms
    assert live["auc_instrument_rate"][0] == live["auc_instrument_rate"][1]
    assert live["accuracy_majority_hindsight"][0] == live["accuracy_majority_hindsight"][1]
    assert live["edge_high"][1] < 0 and not [kind for kind, _ in report.alerts if kind.startswith("live")]
    assert "live per-date AUC of challenger version c" in caplog.text


def test_too_few_sessions_cannot_alert_on_live_auc(world) -> None:
    """One bad session is noise, not evidence: a version needs DSE_MONITOR_MIN_DATES of them."""
    settings, bars = world
    engine = database.engine(settings)
    frame = _resolved(engine, bars)
    days = sorted(frame["date"].unique())[-settings.monitor_min_dates + 1:]
    database.upsert(engine, tables.prediction_outcomes, _outcomes(frame[frame["date"].isin(days)], "c", 0.9))
    # enough outcomes, so the number of sessions is the only thing missing
    report = daily.run(settings.model_copy(update={"monitor_live_days": ALL_DAYS, "monitor_min_outcomes": 1}), days[-1])
    assert report.live["dates"][0] == len(days) and report.live["edge_high"][0] < 0
    assert not [kind for kind, _ in report.alerts if kind.startswith("live")]


def test_a_production_model_giving_the_session_one_probability_alerts_on_its_first_day(world) -> None:
    settings, _ = world
    engine = database.engine(settings)
    day = dt.date(2025, 8, 25)
    rows = [{"symbol": f"S{i:03d}", "date": day, "probability": 0.98, "label": 1, "model_name": "m",
             "model_version": version, "feature_version": "f", "produced_at": 0, "role": role}
            for i in range(live.COLLAPSE_MIN_ROWS) for version, role in (("k", "production"), ("s", "challenger"))]
    rows += [{**rows[0], "symbol": f"R{i:03d}", "model_version": "r", "probability": 0.4 + i / 100}
             for i in range(live.COLLAPSE_MIN_ROWS)]
    database.upsert(engine, tables.predictions, rows)
    collapsed = live.collapsed(engine, day)
    assert collapsed.values.tolist() == [["k", live.COLLAPSE_MIN_ROWS, 0.98]]
    report = daily.Report(day, drift={"ret_1": 0.0}, collapsed=collapsed)
    assert [kind for kind, _ in daily._alerts(settings, report)] == ["collapsed:k"]


def test_yesterdays_sign_learns_its_direction_from_moves_complete_before_the_window() -> None:
    """A market that reverses every day: after an up day the baseline says "down is likelier", as the gate's does."""
    days = pd.bdate_range("2025-01-01", periods=12).date
    bars = pd.DataFrame({"symbol": "A", "date": days, "close": [100.0, 101.0] * 6})
    moved = bars["close"].diff()
    bars["up"] = moved.gt(0).astype(float).where(moved.notna())
    scored = live._sign_rates(bars, since=days[8])
    assert scored[bars["up"] == 1.0].eq(0.0).all() and scored[bars["up"] == 0.0].eq(1.0).all()
    assert live._sign_rates(bars, since=days[1]).equals(bars["up"])  # no complete move before: the sign itself
