"""The one feature definition: the trainer, the streaming job and the monitor all call `compute`.

Every feature of a bar uses only that bar and the ``LOOKBACK - 1`` bars of the same
instrument before it, all known at the bar's close. Each window is evaluated on
its own (NumPy sliding windows, no running sums), so the value of a feature
depends on exactly those bars: the streaming job, which keeps only the last
``LOOKBACK`` bars per instrument, reproduces the offline values bit for bit,
and nothing after a bar can leak into it. Rows without a full lookback get no
features (``valid`` is False) rather than guessed ones.

Synthetic bars (flat rows written for instruments that did not trade) are not
market data: callers drop them before computing (`drop_synthetic`), as replay
never sends them to the stream.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

FEATURE_VERSION = "1"
# Bars a row needs, itself included: the longest window (50-bar moving average).
LOOKBACK = 50
INPUT_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
RETURN_HORIZONS = (1, 5, 10, 20)
MA_WINDOWS = (5, 20, 50)
RSI_WINDOW = 14
VOL_WINDOW = 20
VOLUME_WINDOW = 20
# Log returns beyond this are clipped: a corporate-action seam is not a 300% move.
RETURN_CLIP = 0.5

FEATURE_NAMES: list[str] = [
    *(f"ret_{h}" for h in RETURN_HORIZONS),
    *(f"ma_ratio_{w}" for w in MA_WINDOWS),  # log(close / moving average)
    f"rsi_{RSI_WINDOW}",
    f"volatility_{VOL_WINDOW}",
    "vol_ratio_5_20",
    f"volume_z_{VOLUME_WINDOW}",
    f"flat_share_{VOL_WINDOW}",
    "range",
    "close_position",
    "gap",
    "days_since_prev",
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
]


def drop_synthetic(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars without the store's ``synthetic`` flag (no-trade filler rows are not observations)."""
    if "quality_flags" not in bars:
        return bars
    flags = bars["quality_flags"].fillna("")
    return bars.loc[~flags.str.contains("synthetic", regex=False)]


def _windows(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing windows ending at each row (rows before the first full window get NaNs)."""
    n = len(values)
    padded = np.concatenate([np.full(window - 1, np.nan), values]) if n else np.full(window - 1, np.nan)
    if len(padded) < window:
        return np.empty((0, window))
    return sliding_window_view(padded, window)


def _lag(values: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    if k < len(values):
        out[k:] = values[:-k]
    return out


def _cyclic(values: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    angle = 2 * np.pi * values / period
    return np.sin(angle), np.cos(angle)


def _one_instrument(bars: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    close, high, low, opn = (bars[c] for c in ("close", "high", "low", "open"))
    dates = pd.DatetimeIndex(bars["date"])
    log_close = np.log(close)
    r1 = log_close - _lag(log_close, 1)
    out: dict[str, np.ndarray] = {}
    for h in RETURN_HORIZONS:
        out[f"ret_{h}"] = np.clip(log_close - _lag(log_close, h), -RETURN_CLIP, RETURN_CLIP)
    for w in MA_WINDOWS:
        ratio = np.log(close / _windows(close, w).mean(axis=1))
        out[f"ma_ratio_{w}"] = np.clip(ratio, -RETURN_CLIP, RETURN_CLIP)
    diffs = _windows(close - _lag(close, 1), RSI_WINDOW)
    gains, losses = np.clip(diffs, 0, None).sum(axis=1), np.clip(-diffs, 0, None).sum(axis=1)
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"rsi_{RSI_WINDOW}"] = np.where(total > 0, gains / total, 0.5) - 0.5
    out[f"rsi_{RSI_WINDOW}"][np.isnan(total)] = np.nan
    clipped = np.clip(r1, -RETURN_CLIP, RETURN_CLIP)
    vol20 = _windows(clipped, VOL_WINDOW).std(axis=1)
    vol5 = _windows(clipped, 5).std(axis=1)
    out[f"volatility_{VOL_WINDOW}"] = vol20
    with np.errstate(invalid="ignore", divide="ignore"):
        out["vol_ratio_5_20"] = np.where(vol20 > 0, vol5 / vol20, 1.0)
    out["vol_ratio_5_20"][np.isnan(vol20)] = np.nan
    out[f"volume_z_{VOLUME_WINDOW}"] = _volume_z(bars["volume"])
    # illiquidity: the share of unchanged closes (many DSE stocks sit still for days, or at a floor price)
    out[f"flat_share_{VOL_WINDOW}"] = _windows(np.where(np.isnan(r1), np.nan, r1 == 0), VOL_WINDOW).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["range"] = np.clip((high - low) / close, 0, RETURN_CLIP)
        span = high - low
        # clipped: 1,396 stored bars close outside their own [low, high]
        out["close_position"] = np.clip(np.where(span > 0, (close - low) / span, 0.5), 0, 1) - 0.5
        out["gap"] = np.clip(np.log(opn) - _lag(log_close, 1), -RETURN_CLIP, RETURN_CLIP)
    day_numbers = bars["date"].astype(np.int64).astype(float)
    out["days_since_prev"] = np.log1p(day_numbers - _lag(day_numbers, 1))
    out["dow_sin"], out["dow_cos"] = _cyclic(dates.dayofweek.to_numpy(float), 7)
    out["month_sin"], out["month_cos"] = _cyclic(dates.month.to_numpy(float) - 1, 12)
    return out


def _volume_z(volume: np.ndarray) -> np.ndarray:
    """Z-score of log volume in its window; a missing volume (index files) counts as neutral 0."""
    logs = np.log1p(volume)
    win = _windows(logs, VOLUME_WINDOW)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing windows: nanmean of nothing
        mean, std = np.nanmean(win, axis=1), np.nanstd(win, axis=1)
        z = np.where(std > 0, (logs - mean) / std, 0.0)
    return np.nan_to_num(np.clip(z, -5, 5), nan=0.0)


def compute(bars: pd.DataFrame) -> pd.DataFrame:
    """Features for bars of one or many instruments, in the input's row order.

    ``bars`` needs INPUT_COLUMNS, each instrument's rows in date order (duplicates
    removed). Returns FEATURE_NAMES plus ``valid`` (a full lookback, every feature finite).
    """
    missing = [c for c in INPUT_COLUMNS if c not in bars]
    if missing:
        raise ValueError(f"features.compute needs columns {missing}; got {list(bars.columns)}")
    matrix = np.full((len(bars), len(FEATURE_NAMES)), np.nan)
    positions = np.zeros(len(bars), dtype=np.int64)
    columns = {c: bars[c].to_numpy(float) for c in ("open", "high", "low", "close", "volume")}
    columns["date"] = pd.to_datetime(bars["date"]).to_numpy("datetime64[D]")
    for rows in bars.groupby("symbol", sort=False).indices.values():
        values = _one_instrument({c: v[rows] for c, v in columns.items()})
        matrix[rows] = np.column_stack([values[name] for name in FEATURE_NAMES])
        positions[rows] = np.arange(len(rows))
    result = pd.DataFrame(matrix, index=bars.index, columns=FEATURE_NAMES)
    result["valid"] = np.isfinite(matrix).all(axis=1) & (positions >= LOOKBACK - 1)
    return result


def latest(window: pd.DataFrame) -> pd.Series:
    """Features of the last bar of one instrument's window (the streaming job's case)."""
    return compute(window).iloc[-1]
