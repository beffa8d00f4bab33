"""The one feature definition: the trainer, the streaming job and the monitor all call `compute`.

Each feature is declared once in FEATURES (name, window, meaning, drift-monitored
or not); FEATURE_NAMES, DRIFT_FEATURES, LOOKBACK and FEATURE_VERSION derive from
it. FEATURE_VERSION is a hash of those declarations and of the source of the code
that computes them, so it changes whenever the values can.

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

import hashlib
import inspect
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

INPUT_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
RETURN_HORIZONS = (1, 5, 10, 20)
MA_WINDOWS = (5, 20, 50)
RSI_WINDOW = 14
SHORT_VOL_WINDOW = 5
VOL_WINDOW = 20
VOLUME_WINDOW = 20
# Log returns beyond this are clipped: a corporate-action seam is not a 300% move.
RETURN_CLIP = 0.5
VOLUME_Z_CLIP = 5.0


@dataclass(frozen=True)
class FeatureSpec:
    """One model input, declared once: its column, the bars it reads, what it measures, whether to watch its drift.

    ``window`` counts the bars the value depends on, the bar itself included (``ret_5``
    reads 6 closes). ``drift`` is False for features whose distribution over one
    session's instruments means nothing, because the session alone decides them.
    """

    name: str
    window: int
    description: str
    drift: bool

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"feature {self.name}: window must be at least 1 bar, got {self.window}")


FEATURES: tuple[FeatureSpec, ...] = (
    *(FeatureSpec(f"ret_{h}", h + 1, f"log return over {h} bars, clipped to +-{RETURN_CLIP}", True)
      for h in RETURN_HORIZONS),
    *(FeatureSpec(f"ma_ratio_{w}", w, f"log(close / {w}-bar mean close), clipped to +-{RETURN_CLIP}", True)
      for w in MA_WINDOWS),
    FeatureSpec(f"rsi_{RSI_WINDOW}", RSI_WINDOW + 1,
                f"share of up-moves in the last {RSI_WINDOW} close changes, minus 0.5", True),
    FeatureSpec(f"volatility_{VOL_WINDOW}", VOL_WINDOW + 1,
                f"std of the last {VOL_WINDOW} clipped one-bar log returns", True),
    FeatureSpec(f"vol_ratio_{SHORT_VOL_WINDOW}_{VOL_WINDOW}", VOL_WINDOW + 1,
                f"{SHORT_VOL_WINDOW}-bar over {VOL_WINDOW}-bar return volatility: risk now against usual", True),
    FeatureSpec(f"volume_z_{VOLUME_WINDOW}", VOLUME_WINDOW,
                f"z-score of log volume in its {VOLUME_WINDOW}-bar window, clipped to +-{VOLUME_Z_CLIP}; "
                "no volume (index files) counts as 0", True),
    FeatureSpec(f"flat_share_{VOL_WINDOW}", VOL_WINDOW + 1,
                f"share of unchanged closes among the last {VOL_WINDOW} bars (illiquidity)", True),
    FeatureSpec("range", 1, f"(high - low) / close, clipped to [0, {RETURN_CLIP}]", True),
    FeatureSpec("close_position", 1, "where the close sits in the day's [low, high], minus 0.5", True),
    FeatureSpec("gap", 2, f"log(open / previous close), clipped to +-{RETURN_CLIP}", True),
    # the session decides these (almost every instrument's previous bar is the previous session)
    FeatureSpec("days_since_prev", 2, "log(1 + calendar days since the previous bar)", False),
    FeatureSpec("dow_sin", 1, "day of week on the unit circle (sine)", False),
    FeatureSpec("dow_cos", 1, "day of week on the unit circle (cosine)", False),
    FeatureSpec("month_sin", 1, "month on the unit circle (sine)", False),
    FeatureSpec("month_cos", 1, "month on the unit circle (cosine)", False),
)
# lists, not tuples: pandas selects columns with them and MLflow signatures compare equal to them
FEATURE_NAMES: list[str] = [spec.name for spec in FEATURES]
DRIFT_FEATURES: list[str] = [spec.name for spec in FEATURES if spec.drift]
# Bars a row needs, itself included: the longest window.
LOOKBACK = max(spec.window for spec in FEATURES)


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
    vol5 = _windows(clipped, SHORT_VOL_WINDOW).std(axis=1)
    out[f"volatility_{VOL_WINDOW}"] = vol20
    vol_ratio = f"vol_ratio_{SHORT_VOL_WINDOW}_{VOL_WINDOW}"
    with np.errstate(invalid="ignore", divide="ignore"):
        out[vol_ratio] = np.where(vol20 > 0, vol5 / vol20, 1.0)
    out[vol_ratio][np.isnan(vol20)] = np.nan
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
    return np.nan_to_num(np.clip(z, -VOLUME_Z_CLIP, VOLUME_Z_CLIP), nan=0.0)


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


def encode(row: pd.Series) -> str:
    """One bar's features as a JSON object by name: readers never depend on column order.

    Python floats go out as their shortest repr, which JSON reads back to the same bits.
    """
    return json.dumps({name: float(row[name]) for name in FEATURE_NAMES})


def decode(texts: Iterable[str], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Stored feature objects (`encode`) as a frame of ``names`` (default FEATURE_NAMES), in the given order."""
    names = list(FEATURE_NAMES if names is None else names)
    rows = json.loads(f"[{','.join(texts)}]")  # one parse of the whole column: a call per row cost twice that
    lacking = sorted({name for row in rows for name in names if name not in row})
    if lacking:
        raise ValueError(f"stored features lack {lacking}: written by another feature definition")
    matrix = np.array([[row[name] for name in names] for row in rows], dtype=float).reshape(len(rows), len(names))
    return pd.DataFrame(matrix, columns=names)


def fingerprint(specs: Sequence[FeatureSpec], functions: Sequence[Callable[..., object]],
                constants: Sequence[object]) -> str:
    """First 12 hex digits of the SHA-256 of the declarations, the computing code and its constants.

    Any edit to a window, a name or the code that computes the values (comments included)
    gives a new version, so a model can never be served features it was not trained on.
    """
    digest = hashlib.sha256(repr(tuple(specs)).encode())
    digest.update(repr(tuple(constants)).encode())
    for function in functions:
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:12]


#: everything the values of `compute` depend on besides the windows in FEATURES
COMPUTE_PATH: tuple[Callable[..., object], ...] = (drop_synthetic, _windows, _lag, _cyclic, _one_instrument,
                                                   _volume_z, compute)
COMPUTE_CONSTANTS: tuple[object, ...] = (RETURN_HORIZONS, MA_WINDOWS, RSI_WINDOW, SHORT_VOL_WINDOW, VOL_WINDOW,
                                         VOLUME_WINDOW, RETURN_CLIP, VOLUME_Z_CLIP)
FEATURE_VERSION = fingerprint(FEATURES, COMPUTE_PATH, COMPUTE_CONSTANTS)
