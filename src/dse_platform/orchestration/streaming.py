"""The streaming DAG's steps: parameter checks and the predictions of the range (no Airflow imports)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.errors import PlatformError
from dse_platform.model import features
from dse_platform.serving import database

STREAM_TRIGGERS = ("available-now", "processing-time")


def check_stream_params(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the streaming DAG's trigger params beyond their JSON schema; normalised params."""
    try:
        start = dt.date.fromisoformat(str(params["start"]))
        end = dt.date.fromisoformat(str(params["end"]))
    except ValueError as exc:
        raise PlatformError(f"start/end must be YYYY-MM-DD dates: {exc}", "fix the dates in the trigger form") from exc
    if start > end:
        raise PlatformError(f"start {start} is after end {end}", "swap the dates in the trigger form")
    speed = float(params["speed"])
    if speed < 0:
        raise PlatformError(f"speed {speed} is negative", "use trading days per second, or 0 for as fast as possible")
    if params["trigger"] not in STREAM_TRIGGERS:
        raise PlatformError(f"trigger {params['trigger']!r} is unknown", f"use one of {STREAM_TRIGGERS}")
    limit = int(params.get("run_time_limit_s") or 0)
    if params["trigger"] == "processing-time" and limit <= 0:
        raise PlatformError("a processing-time run needs a run time limit to end by itself",
                            "set run_time_limit_s (seconds) or use the available-now trigger")
    symbols = normalise_symbols(params.get("symbols"))
    if symbols:
        known = set(store.read_bars(settings.store_dir, start=start, end=end, columns=["symbol", "date"])["symbol"])
        unknown = sorted(set(symbols) - known)
        if unknown:
            raise PlatformError(f"unknown symbol(s) {', '.join(unknown)}: no bars between {start} and {end}",
                                "use DSE trading codes present in the store (see quality_by_symbol.csv)")
    return {"start": str(start), "end": str(end), "symbols": symbols, "speed": speed, "trigger": params["trigger"],
            "run_time_limit_s": limit}


def normalise_symbols(symbols: Iterable[str] | str | None) -> list[str]:
    """Trading codes as a list, upper case; a comma-separated string is what a rendered template gives."""
    items = symbols.split(",") if isinstance(symbols, str) else symbols or []
    return [s.strip().upper() for s in items if s.strip()]


@dataclass(frozen=True)
class RangePredictions:
    """What the serving DB holds for a replayed range: the streaming DAG's health check."""

    count: int  #: predictions dated in the range (of the symbols)
    last_session: dt.date  #: the last date in the range the store has replayable bars for (of the symbols)
    on_last_session: int  #: predictions dated that session

    def ready(self, min_predictions: int) -> bool:
        """The job got through the range: the last session replayed was scored, and enough in all."""
        return self.on_last_session > 0 and self.count >= min_predictions


def range_predictions(settings: Settings, start: dt.date, end: dt.date,
                      symbols: Iterable[str] | None = None) -> RangePredictions:
    """Production's predictions for ``start``..``end`` (and ``symbols``), whenever scored: a re-run of a range already
    processed scores nothing new (its bars are re-sent ones) yet is healthy when the range has its predictions.
    """
    codes = list(symbols or []) or None
    # replay sends no synthetic (no-trade filler) bar, so those are not what the job must reach
    bars = store.read_bars(settings.store_dir, start=start, end=end, symbols=codes, columns=["date", "quality_flags"])
    dates = features.drop_synthetic(bars)["date"]
    if dates.empty:
        which = f" for {', '.join(codes)}" if codes else ""
        raise PlatformError(f"the store has no bars between {start} and {end}{which}: nothing was replayed to score",
                            "trigger the DAG with a range of trading days the store holds")
    last = dates.max()
    engine = database.engine(settings)
    database.migrate(engine)
    table = tables.predictions
    # what was served: the challenger's shadow rows would count a range production never scored
    in_range = table.c.date.between(start, end) & (table.c.role == tables.PRODUCTION)
    if codes:
        in_range = in_range & table.c.symbol.in_(codes)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(table).where(in_range)).scalar_one()
        on_last = conn.execute(select(func.count()).select_from(table).where(in_range, table.c.date == last)
                               ).scalar_one()
    return RangePredictions(int(count), last, int(on_last))
