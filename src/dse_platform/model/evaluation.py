"""Honest evaluation: walk-forward folds by date and metrics beside two baselines.

Folds are expanding windows over session dates: each test window is a block of
consecutive sessions, and its model trains only on sessions that end
``purge`` sessions before the window starts (the target looks one session
ahead, so the purge keeps every training label strictly before the test
window). Nothing is ever shuffled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from dse_platform.errors import PlatformError

METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "log_loss", "brier")
BASELINES = ("always_up", "yesterday_sign")


@dataclass(frozen=True)
class Fold:
    number: int
    train_end: dt.date  # last training date (inclusive)
    test_start: dt.date
    test_end: dt.date  # inclusive


def walk_forward(dates: np.ndarray, n_folds: int, test_sessions: int, purge: int, min_train: int) -> list[Fold]:
    """The last ``n_folds`` blocks of ``test_sessions`` dates, each with its purged training range."""
    sessions = np.unique(dates)
    need = min_train + purge + n_folds * test_sessions
    if len(sessions) < need:
        raise PlatformError(
            f"too little data for {n_folds} walk-forward folds of {test_sessions} sessions: the data has "
            f"{len(sessions)} sessions, the folds need {need} ({min_train} training + {purge} purge + "
            f"{n_folds}x{test_sessions} test)",
            "use fewer folds (DSE_TRAIN_FOLDS / --folds), shorter windows (DSE_TRAIN_TEST_SESSIONS) "
            "or a wider date range")
    first_test = len(sessions) - n_folds * test_sessions
    folds = []
    for k in range(n_folds):
        start = first_test + k * test_sessions
        folds.append(Fold(k + 1, sessions[start - purge - 1], sessions[start], sessions[start + test_sessions - 1]))
    return folds


def score(y: np.ndarray, p: np.ndarray, label: np.ndarray | None = None) -> dict[str, float]:
    """The five headline metrics of probabilities ``p`` (and calls ``label``, default p >= 0.5) for ``y``."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    label = (p >= 0.5).astype(int) if label is None else label
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y, label)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, label)) if both else float("nan"),
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
    }


def baselines(train_y: np.ndarray, train_ret1: np.ndarray, test_ret1: np.ndarray
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probability, call) of each baseline, fitted on the training rows only.

    always_up: calls "up" for every row; its probability is the training up-rate.
    yesterday_sign: calls "up" after an up day; its probability is the training
    up-rate after up days / after other days.
    """
    up_rate = float(np.mean(train_y))
    after_up = train_ret1 > 0
    p_after_up = float(np.mean(train_y[after_up])) if after_up.any() else up_rate
    p_after_other = float(np.mean(train_y[~after_up])) if (~after_up).any() else up_rate
    n = len(test_ret1)
    return {
        "always_up": (np.full(n, up_rate), np.ones(n, dtype=int)),
        "yesterday_sign": (np.where(test_ret1 > 0, p_after_up, p_after_other), (test_ret1 > 0).astype(int)),
    }


def score_with_baselines(y: np.ndarray, p: np.ndarray,
                         base: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Flat metric dict: ``<metric>`` for the model and ``baseline_<name>_<metric>`` beside it."""
    out = score(y, p)
    for name, (bp, calls) in base.items():
        out.update({f"baseline_{name}_{k}": v for k, v in score(y, bp, calls).items()})
    return out


def gate_score(metrics: dict[str, float], metric: str, prefix: str = "") -> float:
    """The gate's higher-is-better value of ``metric`` (log loss is negated)."""
    if metric == "neg_log_loss":
        return -metrics[f"{prefix}log_loss"]
    return metrics[f"{prefix}{metric}"]

