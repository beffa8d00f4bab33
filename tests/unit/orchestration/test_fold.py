"""Folding takes only final streamed bars, through the ingest rules; an official bar replaces a live one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.orchestration.fold import fold_streamed_bars
from dse_platform.serving import database
from tests.unit.model.synthetic import random_bars


def test_only_final_bars_fold_checked_and_eod_replaces_live(tmp_path) -> None:
    bars = random_bars("GP", 30, seed=1)
    days = sorted(bars["date"])
    stored = bars.iloc[:-3].assign(trades=pd.array([None] * 27, dtype="Int64"), value_mn=np.nan, sector=None,
                                   category=None, quality_flags="", source_file="x.csv")
    live = stored.iloc[[-1]].assign(source_file="stream:live")  # folded by an earlier version
    settings = Settings(_env_file=None, DSE_STORE_DIR=tmp_path / "store", db_url=f"sqlite:///{tmp_path / 'db'}")
    store.write_store(settings.store_dir, pd.concat([stored.iloc[:-1], live], ignore_index=True),
                      TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    engine = database.engine(settings)
    database.migrate(engine)
    last = bars.iloc[-1]
    row = {"symbol": "GP", "volume": 1000.0, "trades": 5, "value_mn": None, "produced_at": 0}
    ohlc = lambda b, k=1.0: {c: float(b[c]) * k for c in ("open", "high", "low", "close")}  # noqa: E731
    database.upsert(engine, tables.bars, [
        {**row, "date": live["date"].iloc[0], **ohlc(live.iloc[0], 1.01), "source": "eod"},
        {**row, "date": days[-3], **ohlc(bars.iloc[-3]), "source": "replay"},
        {**row, "date": days[-2], **ohlc(bars.iloc[-2]), "source": "live"},
        {**row, "date": days[-1], **ohlc(last), "high": float(last["low"]) - 1, "source": "replay"},
    ])
    out = fold_streamed_bars(settings, days[-1])
    assert out == {"added": 1, "replaced": 1, "rejected": 1, "sessions_added": 0}
    after = store.read_bars(settings.store_dir).set_index("date")
    assert days[-2] not in after.index and days[-1] not in after.index  # live never, rejected never
    assert after.loc[days[-3], "source_file"] == "stream:replay"
    assert after.loc[live["date"].iloc[0], "source_file"] == "stream:eod"
    assert "high_below_low" in (settings.store_dir / "rejects.csv").read_text()
    assert fold_streamed_bars(settings, days[-1])["added"] == 0  # idempotent


def test_a_folded_jump_is_flagged_against_the_stored_previous_close(tmp_path) -> None:
    bars = random_bars("GP", 30, seed=2)
    days = sorted(bars["date"])
    stored = bars.iloc[:-1].assign(trades=pd.array([None] * 29, dtype="Int64"), value_mn=np.nan, sector=None,
                                   category=None, quality_flags="", source_file="x.csv")
    settings = Settings(_env_file=None, DSE_STORE_DIR=tmp_path / "store", db_url=f"sqlite:///{tmp_path / 'db'}")
    store.write_store(settings.store_dir, stored, TradingCalendar(tuple(days), ((days[0], days[-1]),)), {})
    engine = database.engine(settings)
    database.migrate(engine)
    price = float(stored["close"].iloc[-1]) * 1.6
    database.upsert(engine, tables.bars, [{"symbol": "GP", "date": days[-1], "open": price, "high": price,
                                           "low": price, "close": price, "volume": 10.0, "trades": 1,
                                           "value_mn": None, "source": "replay", "produced_at": 0}])
    assert fold_streamed_bars(settings, days[-1])["added"] == 1
    assert "price_jump" in store.read_bars(settings.store_dir).iloc[-1]["quality_flags"]
