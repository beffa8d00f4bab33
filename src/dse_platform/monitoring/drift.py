"""Feature drift: the population stability index of streamed features against the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import select

from dse_platform.config import Settings
from dse_platform.contracts import tables
from dse_platform.data import store
from dse_platform.model import features


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (reference deciles as bins)."""
    reference, current = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.all(current == edges[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def relative_to_session(values: pd.DataFrame, dates: Sequence[dt.date] | pd.Series) -> pd.DataFrame:
    """Each feature minus its session's cross-sectional median: the shape of a day's cross-section, not its level."""
    day = pd.Series(list(dates), index=values.index)
    return values - values.groupby(day).transform("median")


def feature_drift(settings: Settings, engine, session: dt.date) -> dict[str, float]:
    """PSI per drift-monitored feature: the stream's last N sessions to ``session`` vs the store's sessions before them.

    Each value is taken relative to its session's cross-sectional median (`relative_to_session`):
    the model ranks instruments against each other on a day, and a market-wide level (a rally, a
    volatile month) moves every instrument's trend features together for weeks. Measured on the
    shipped history (windows every 10 sessions, N = 20): raw values alert on 83% of clean windows,
    relative ones on 47%, almost all of those flat_share_20 during the floor-price regime and the
    months after it was lifted (late 2024 to April 2025, a real change in liquidity); every window
    since May 2025 stays under 0.25.

    N is DSE_MONITOR_DRIFT_SESSIONS. One session's cross-section is no distribution to compare:
    a market-wide move shifts every instrument's return that day, so it "drifts" on most real
    sessions; N sessions average such days out. The reference is the DSE_MONITOR_REFERENCE_SESSIONS
    sessions ending before the window, restricted to the instruments the window has, so a change
    in which instruments stream is not counted as drift. Only DRIFT_FEATURES: the others (weekday,
    month, days since the previous bar) take one value per session.
    """
    calendar = store.read_calendar(settings.store_dir)
    window = [d for d in calendar.sessions if d <= session][-settings.monitor_drift_sessions:] or [session]
    table = tables.features
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.symbol, table.c.date, table.c["values"]).where(
            table.c.date >= window[0], table.c.date <= session,
            table.c.feature_version == features.FEATURE_VERSION)).all()
    if not rows:
        return {}
    current = relative_to_session(features.decode([r[2] for r in rows], features.DRIFT_FEATURES),
                                  [r[1] for r in rows])
    symbols = sorted({r[0] for r in rows})
    sessions = [d for d in calendar.sessions if d < window[0]][-settings.monitor_reference_sessions:]
    if not sessions:
        return {}
    bars = store.read_bars(settings.store_dir, start=sessions[0] - dt.timedelta(days=120), end=sessions[-1],
                           symbols=symbols)
    bars = features.drop_synthetic(bars).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    ref = features.compute(bars)
    keep = ref["valid"].to_numpy() & (bars["date"] >= sessions[0]).to_numpy()
    ref = relative_to_session(ref.loc[keep, features.DRIFT_FEATURES], bars.loc[keep, "date"])
    return {name: psi(ref[name].to_numpy(float), current[name].to_numpy(float)) for name in features.DRIFT_FEATURES}
