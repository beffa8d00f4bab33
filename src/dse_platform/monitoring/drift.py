"""Feature drift: the population stability index of streamed features against the store."""

from __future__ import annotations

import datetime as dt

import numpy as np
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


def feature_drift(settings: Settings, engine, session: dt.date) -> dict[str, float]:
    """PSI per drift-monitored feature: the stream's features of ``session`` vs the store's last reference sessions.

    Only DRIFT_FEATURES: the others (weekday, month, days since the previous bar) take one
    value per session, so one session's distribution of them always differs from the reference's.
    """
    table = tables.features
    with engine.connect() as conn:
        rows = conn.execute(select(table.c["values"]).where(table.c.date == session,
                                                            table.c.feature_version == features.FEATURE_VERSION)
                            ).scalars().all()
    if not rows:
        return {}
    current = features.decode(rows, features.DRIFT_FEATURES)
    calendar = store.read_calendar(settings.store_dir)
    sessions = [d for d in calendar.sessions if d < session][-settings.monitor_reference_sessions:]
    bars = store.read_bars(settings.store_dir, start=calendar.sessions[0] if not sessions else
                           sessions[0] - dt.timedelta(days=120), end=sessions[-1] if sessions else session)
    bars = features.drop_synthetic(bars).sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    ref = features.compute(bars)
    ref = ref[ref["valid"].to_numpy() & (bars["date"] >= (sessions[0] if sessions else session)).to_numpy()]
    return {name: psi(ref[name].to_numpy(float), current[name].to_numpy(float)) for name in features.DRIFT_FEATURES}
