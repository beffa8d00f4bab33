"""Folding the stream's final bars into the training store, through the same quality rules as ingest.

Only final bars are folded: ``replay`` (the shipped history streamed back) and ``eod`` (DSE's
official day-end bars). A ``live`` bar is a session's bar-so-far from ticks (close = last
traded price) that an official bar may never replace, so it never enters the training data.
An ``eod`` bar replaces a stored bar of the same (symbol, date) that an earlier fold took
from the live stream (``source_file`` ``stream:live``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.data.instruments import load_reference
from dse_platform.data.quality import check_bars
from dse_platform.data.raw_file import read_text
from dse_platform.data.rules import MIN_TRADING_INSTRUMENTS
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.serving import database

#: bar sources that are final: nothing later replaces them
FINAL_SOURCES = ("replay", "eod")
#: stored bars an official end-of-day bar replaces
REPLACEABLE_PREFIX = "stream:live"
SIDE_FILES = ("rejects.csv", "quality_report.json", "quality_by_symbol.csv")


def _reference(settings: Settings) -> pd.DataFrame:
    if settings.reference_file.exists():
        return load_reference(read_text(settings.reference_file))
    return pd.DataFrame(columns=["sector", "category"])


def _checked(candidates: pd.DataFrame, context: pd.DataFrame, settings: Settings,
             day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates kept (with flags) and rejected by the ingest rules.

    Each instrument's last stored bar before its candidates goes along as context, so the
    rules comparing with the previous close (price jump, synthetic) see it, then is dropped.
    """
    first = candidates.groupby("symbol")["date"].min()
    before = context[context["date"] < context["symbol"].map(first)]
    context_rows = before.groupby("symbol").tail(1)
    outcome = check_bars(pd.concat([context_rows, candidates], ignore_index=True), _reference(settings),
                         "stream", today=day)
    keys = pd.MultiIndex.from_frame(candidates[["symbol", "date"]])
    kept = outcome.kept[pd.MultiIndex.from_frame(outcome.kept[["symbol", "date"]]).isin(keys)]
    rejects = outcome.rejects[outcome.rejects["source_file"].astype(str).str.startswith("stream:")]
    return kept.reset_index(drop=True), rejects


def fold_streamed_bars(settings: Settings, day: dt.date) -> dict[str, Any]:
    """Add the final bars the stream stored up to ``day`` that the store lacks; the store is rewritten atomically.

    Idempotent: bars already in the store are left as they are (except live-derived ones an
    ``eod`` bar replaces), so a rerun for the same logical date adds nothing. The whole
    read-modify-write holds the store's writer lock.
    """
    engine = database.engine(settings)
    database.migrate(engine)
    table = tables.bars
    query = select(table).where(table.c.date <= day, table.c.source.in_(FINAL_SOURCES))
    with store.writer_lock(settings.store_dir):
        with engine.connect() as conn:
            streamed = pd.DataFrame(conn.execute(query).mappings().all())
        if streamed.empty:
            return {"added": 0, "replaced": 0, "rejected": 0, "sessions_added": 0}
        current = store.read_bars(settings.store_dir)
        stored_keys = pd.MultiIndex.from_frame(current[["symbol", "date"]])
        live = current["source_file"].astype(str).str.startswith(REPLACEABLE_PREFIX)
        live_keys = pd.MultiIndex.from_frame(current.loc[live, ["symbol", "date"]])
        keys = pd.MultiIndex.from_frame(streamed[["symbol", "date"]])
        replacing = (streamed["source"] == "eod").to_numpy() & keys.isin(live_keys)
        candidates = streamed[~keys.isin(stored_keys) | replacing]
        if candidates.empty:
            return {"added": 0, "replaced": 0, "rejected": 0, "sessions_added": 0}
        candidates = candidates.assign(trades=candidates["trades"].astype("Int64"),
                                       source_file="stream:" + candidates["source"].astype(str))
        kept, rejects = _checked(candidates, current[~live], settings, day)
        replaced = live & stored_keys.isin(pd.MultiIndex.from_frame(kept[["symbol", "date"]]))
        base = current[~replaced]
        calendar = store.read_calendar(settings.store_dir)
        per_day = kept.groupby("date")["symbol"].nunique()
        sessions = sorted(set(calendar.sessions) | {d for d, n in per_day.items() if n >= MIN_TRADING_INSTRUMENTS})
        added_sessions = len(sessions) - len(calendar.sessions)
        coverage = calendar.coverage if not added_sessions else (
            *calendar.coverage, (min(per_day.index), max(per_day.index)))
        extra = store.read_extra(settings.store_dir, SIDE_FILES)
        if len(rejects):
            previous = extra.get("rejects.csv", b"")
            extra["rejects.csv"] = previous + rejects.to_csv(index=False, header=not previous).encode()
        store.write_store(settings.store_dir, pd.concat([base, kept[list(current.columns)]], ignore_index=True),
                          TradingCalendar(tuple(sessions), tuple(coverage)), extra)
    return {"added": len(kept) - int(replaced.sum()), "replaced": int(replaced.sum()), "rejected": len(rejects),
            "sessions_added": added_sessions}
