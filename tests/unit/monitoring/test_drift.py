"""Feature drift reads the stream's features by name, for the drift-monitored features only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, insert

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.model import features
from dse_platform.monitoring.drift import feature_drift
from tests.unit.model.synthetic import random_bars

INSTRUMENTS, SESSIONS = 150, 120


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Settings, pd.DataFrame]:
    """A store of random walks and the features the stream would have computed on its last session."""
    home = tmp_path_factory.mktemp("home")
    bars = pd.concat([random_bars(f"S{i:03d}", SESSIONS, seed=i) for i in range(INSTRUMENTS)], ignore_index=True)
    days = sorted(bars["date"].unique())
    stored = bars.assign(trades=pd.array([None] * len(bars), dtype="Int64"), value_mn=np.nan, sector=None,
                         category=None, quality_flags="", source_file="test")
    store.write_store(home / "store", stored, TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    feats = features.compute(bars)
    last = feats[(bars["date"] == days[-1]).to_numpy()]
    assert last["valid"].all()
    settings = Settings(_env_file=None, DSE_STORE_DIR=home / "store", monitor_reference_sessions=60)
    return settings, last


def _engine(path: Path, rows: list[dict]):
    engine = create_engine(f"sqlite:///{path}")
    tables.METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.features), rows)
    return engine


def _stored(frame: pd.DataFrame, session, version: str = features.FEATURE_VERSION) -> list[dict]:
    return [{"symbol": f"S{i:03d}", "date": session, "feature_version": version, "values": features.encode(row)}
            for i, (_, row) in enumerate(frame.iterrows())]


def test_only_drift_features_are_measured(world, tmp_path) -> None:
    settings, last = world
    session = store.read_calendar(settings.store_dir).sessions[-1]
    # a row of the old positional format under an old version must be ignored, not misread
    old = {"symbol": "OLD", "date": session, "feature_version": "1", "values": json.dumps([0.0] * 20)}
    drift = feature_drift(settings, _engine(tmp_path / "serving.db", [*_stored(last, session), old]), session)
    assert list(drift) == features.DRIFT_FEATURES
    assert all(np.isfinite(v) for v in drift.values())


def test_a_shift_in_one_feature_shows_in_that_feature(world, tmp_path) -> None:
    settings, last = world
    session = store.read_calendar(settings.store_dir).sessions[-1]
    plain = feature_drift(settings, _engine(tmp_path / "plain.db", _stored(last, session)), session)
    half = np.arange(len(last)) < len(last) // 2  # one group of instruments moves, the rest does not
    shifted = last.assign(gap=np.where(half, last["gap"] + 0.2, last["gap"]))
    moved = feature_drift(settings, _engine(tmp_path / "shifted.db", _stored(shifted, session)), session)
    assert moved["gap"] > plain["gap"] + 1.0
    assert {k: v for k, v in moved.items() if k != "gap"} == {k: v for k, v in plain.items() if k != "gap"}


def test_a_market_wide_move_is_not_drift(world, tmp_path) -> None:
    """Every instrument's value shifted alike (a rally) leaves the session's cross-section as it was."""
    settings, last = world
    session = store.read_calendar(settings.store_dir).sessions[-1]
    plain = feature_drift(settings, _engine(tmp_path / "plain.db", _stored(last, session)), session)
    rally = feature_drift(settings, _engine(tmp_path / "rally.db", _stored(last.assign(ret_1=last["ret_1"] + 0.05),
                                                                            session)), session)
    assert rally["ret_1"] == pytest.approx(plain["ret_1"], abs=1e-9)
