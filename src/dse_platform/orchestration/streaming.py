"""The streaming DAG's steps: parameter checks and the predictions count (no Airflow imports)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.errors import PlatformError
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
    symbols = [s.strip().upper() for s in params.get("symbols") or [] if s.strip()]
    if symbols:
        known = set(store.read_bars(settings.store_dir, start=start, end=end, columns=["symbol", "date"])["symbol"])
        unknown = sorted(set(symbols) - known)
        if unknown:
            raise PlatformError(f"unknown symbol(s) {', '.join(unknown)}: no bars between {start} and {end}",
                                "use DSE trading codes present in the store (see quality_by_symbol.csv)")
    return {"start": str(start), "end": str(end), "symbols": symbols, "speed": speed, "trigger": params["trigger"],
            "run_time_limit_s": limit}


def predictions_since(settings: Settings, since: dt.datetime) -> int:
    """Predictions scored at or after ``since`` (the streaming DAG's health check)."""
    engine = database.engine(settings)
    database.migrate(engine)
    table = tables.predictions
    with engine.connect() as conn:
        from sqlalchemy import func

        return int(conn.execute(select(func.count()).select_from(table).where(table.c.scored_at >= since))
                   .scalar_one())
