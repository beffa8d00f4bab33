"""Honest evaluation: walk-forward folds, a holdout nothing is chosen on, and skill beside five baselines.

Folds are expanding windows over session dates: each test window is a block of
consecutive sessions, and its model trains only on sessions that end ``purge``
sessions before the window starts (the target looks one session ahead, so the
purge keeps every training label strictly before the test window). Nothing is ever
shuffled. The latest ``holdout`` sessions come after every fold (behind the same
purge): no fold, threshold or recipe choice ever sees them. The served model is fit
on everything before the holdout, so its holdout score is the served model's own
honest out-of-sample score; fitting it on the holdout too would leave it with none.

What is measured, and why:

- **Per fold, never pooled.** Every metric is computed inside one test window, then
  summarised as the mean and the spread (sd) across folds. Pooling probabilities
  of different folds' models into one AUC mixes their base rates: a constant
  "always up" of each fold's own training up-rate scored 0.387 pooled, although a
  constant ranks nothing (0.5).
- **Moved rows.** On DSE most "not up" rows are unchanged closes (illiquid names,
  floor prices), not falls. ``moved_*`` repeats each metric on rows whose next
  close differs from the close: skill at the direction, not at "will it trade".
- **Per date.** ``date_auc`` is the cross-sectional AUC within one session and
  ``date_ic`` the Spearman rank correlation of P(up) with the next return within
  it (the rank IC); a date's value uses only that date's rows, so dates are the
  clusters. ``dates_*`` gives their mean over all out-of-sample dates with a 95%
  t-interval (mean ± t·sd/√n_dates). Dates next to each other are not fully
  independent (regimes last months), so read the interval as a lower bound on the
  uncertainty. A predictor that is constant on a date has IC 0 (it ranks nothing).
- **Baselines**, each fitted on its fold's training rows only: ``majority`` (the
  majority class, at the training up-rate), ``always_up`` (same probability, always
  calls up), ``yesterday_sign`` (up-rate after an up day / after other days),
  ``instrument_rate`` (each instrument's training up-rate, shrunk towards the
  overall rate by INSTRUMENT_PRIOR_ROWS rows) and ``illiquidity`` (a logistic
  regression on ``flat_share_20`` alone: "illiquid names do not go up"). For every
  metric `versus` names the strongest baseline and the model's edge over it; a
  model earns its keep only by beating the strongest.
- **Breakdowns** by liquidity (terciles of the instruments' median traded value in
  the last LIQUIDITY_SESSIONS training sessions of the fold: no look-ahead) and by
  regime (FLOOR_PRICE_PERIODS vs free trading).

The target stays "next close above this close": P(up) is the contract of serving,
outcome resolution and monitoring. The alternative, "up given moved" beside a
separate "moves" model served as their product, was measured on the six default
folds of the shipped data (fold means, product minus direct model): with the
logistic recipe it added 0.009 AUC on moved rows and took 0.014 off the log loss,
but no AUC on all rows (-0.000); with boosting (100 trees) it lost on all three
(-0.000 AUC, +0.001 log loss, -0.003 AUC on moved rows). A flexible model learns "will it move" and
"which way" from the one target, so a second model is not worth its cost; what
the single target hides, the moved-only and per-date figures show beside every
headline number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression

from dse_platform.errors import PlatformError

#: metrics of the rows of a window (the gate compares these)
METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "log_loss", "brier")
#: metrics of each date's cross-section, averaged over the dates of a window
DATE_METRICS = ("date_auc", "date_ic")
#: every metric of a window: on all rows, then on moved rows only
ALL_METRICS = tuple(f"{subset}{m}" for subset in ("", "moved_") for m in (*METRICS, *DATE_METRICS))
ALL_DATE_METRICS = tuple(m for m in ALL_METRICS if m.removeprefix("moved_") in DATE_METRICS)
LOWER_IS_BETTER = frozenset(f"{subset}{m}" for subset in ("", "moved_") for m in ("log_loss", "brier"))
BASELINES = ("majority", "always_up", "yesterday_sign", "instrument_rate", "illiquidity")
#: metrics of the liquidity and regime breakdowns
BREAKDOWN_METRICS = ("roc_auc", "moved_roc_auc", "date_auc", "date_ic")
COUNTS = ("rows", "moved_rows", "dates")

#: training rows an instrument's up-rate is shrunk with towards the overall rate (instrument_rate baseline)
INSTRUMENT_PRIOR_ROWS = 20
#: recent training sessions whose median traded value ranks an instrument's liquidity
LIQUIDITY_SESSIONS = 240
LIQUIDITY_BUCKETS = ("low", "mid", "high")
REGIMES = ("floor", "free")

#: DSE floor-price periods (first and last bar date of the regime, inclusive). BSEC imposed floor
#: prices on 2020-03-19, lifted them for 66 names on 2021-04-07 and for the rest on 2021-06-03;
#: reimposed them on 2022-07-31 and lifted them (but for 35 names) on 2024-01-18. The shipped
#: bars agree: the share of next closes that moved falls from ~0.9 to 0.3-0.4 on 2020-03-22 and
#: ~0.1 in June 2020, climbs 0.65 -> 0.80 on 2021-04-07 and 0.80 -> 0.93 on 2021-06-03, drops
#: 0.96 -> 0.80 on 2022-07-31 (0.3-0.4 through 2023) and jumps 0.42 -> 0.88 on 2024-01-18.
FLOOR_PRICE_PERIODS: tuple[tuple[dt.date, dt.date], ...] = (
    (dt.date(2020, 3, 19), dt.date(2021, 6, 2)),
    (dt.date(2022, 7, 31), dt.date(2024, 1, 17)),
)


@dataclass(frozen=True)
class Fold:
    """A test window and its purged training range; number 0 is the holdout."""

    number: int
    train_end: dt.date  # last training date (inclusive)
    test_start: dt.date
    test_end: dt.date  # inclusive


def walk_forward(dates: np.ndarray, n_folds: int, test_sessions: int, purge: int, min_train: int,
                 holdout: int = 0) -> list[Fold]:
    """The last ``n_folds`` blocks of ``test_sessions`` dates before the holdout, each with its purged training range.

    With a holdout, the last fold's test window ends ``purge`` sessions before it (where
    the holdout's own training range ends), so no fold's label looks into the holdout.
    """
    sessions = np.unique(dates)
    reserved = holdout + purge if holdout else 0
    need = min_train + purge + n_folds * test_sessions + reserved
    if len(sessions) < need:
        held = f" + {holdout} holdout + {purge} purge" if holdout else ""
        raise PlatformError(
            f"too little data for {n_folds} walk-forward folds of {test_sessions} sessions: the data has "
            f"{len(sessions)} sessions, the folds need {need} ({min_train} training + {purge} purge + "
            f"{n_folds}x{test_sessions} test{held})",
            "use fewer folds (DSE_TRAIN_FOLDS / --folds), shorter windows (DSE_TRAIN_TEST_SESSIONS), "
            "a shorter holdout (DSE_TRAIN_HOLDOUT_SESSIONS) or a wider date range")
    usable = sessions[:len(sessions) - reserved]
    first_test = len(usable) - n_folds * test_sessions
    folds = []
    for k in range(n_folds):
        start = first_test + k * test_sessions
        folds.append(Fold(k + 1, usable[start - purge - 1], usable[start], usable[start + test_sessions - 1]))
    return folds


def holdout_fold(dates: np.ndarray, holdout: int, purge: int) -> Fold | None:
    """The latest ``holdout`` sessions as fold 0, trained up to ``purge`` sessions before them (None: no holdout)."""
    if not holdout:
        return None
    sessions = np.unique(dates)
    return Fold(0, sessions[-holdout - purge - 1], sessions[-holdout], sessions[-1])


def regime(dates: Iterable[dt.date]) -> np.ndarray:
    """"floor" for dates inside FLOOR_PRICE_PERIODS, else "free"."""
    days = np.asarray(list(dates), dtype=object)
    floor = np.zeros(len(days), dtype=bool)
    for first, last in FLOOR_PRICE_PERIODS:
        floor |= (days >= first) & (days <= last)
    return np.where(floor, "floor", "free")


def liquidity_buckets(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Liquidity tercile of each test row's instrument, ranked on training rows only; "new" when it has none.

    An instrument's liquidity is its median traded value (close x volume) over the last
    LIQUIDITY_SESSIONS sessions of ``train``; terciles split the instruments, not the rows.
    """
    sessions = np.unique(train["date"])
    recent = train[train["date"] >= sessions[-LIQUIDITY_SESSIONS:][0]] if len(sessions) else train
    value = recent.groupby("symbol")["traded_value"].median().dropna()
    share = value.rank(pct=True, method="average")
    bucket = pd.Series(np.select([share <= 1 / 3, share <= 2 / 3], LIQUIDITY_BUCKETS[:2], LIQUIDITY_BUCKETS[2]),
                       index=value.index)
    return test["symbol"].map(bucket).fillna("new").to_numpy(object)


def _rate(y: np.ndarray, default: float) -> float:
    return float(np.mean(y)) if len(y) else default


def baselines(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probability, call) of each baseline on the ``test`` rows, fitted on the ``train`` rows only.

    Both frames hold ``symbol``, ``target``, ``ret_1`` and ``flat_share_20``.
    """
    y = train["target"].to_numpy(int)
    up_rate = _rate(y, 0.5)
    n = len(test)
    after_up = train["ret_1"].to_numpy() > 0
    test_up = test["ret_1"].to_numpy() > 0
    yesterday = np.where(test_up, _rate(y[after_up], up_rate), _rate(y[~after_up], up_rate))
    by_symbol = train.groupby("symbol")["target"].agg(["sum", "count"])
    shrunk = (by_symbol["sum"] + INSTRUMENT_PRIOR_ROWS * up_rate) / (by_symbol["count"] + INSTRUMENT_PRIOR_ROWS)
    instrument = test["symbol"].map(shrunk).fillna(up_rate).to_numpy(float)
    if len(np.unique(y)) == 2:
        rule = LogisticRegression().fit(train[["flat_share_20"]], y)
        illiquid = rule.predict_proba(test[["flat_share_20"]])[:, 1]
    else:
        illiquid = np.full(n, up_rate)
    constant = np.full(n, up_rate)
    return {
        "majority": (constant, np.full(n, int(up_rate >= 0.5))),
        "always_up": (constant, np.ones(n, dtype=int)),
        "yesterday_sign": (yesterday, test_up.astype(int)),
        "instrument_rate": (instrument, (instrument >= 0.5).astype(int)),
        "illiquidity": (illiquid, (illiquid >= 0.5).astype(int)),
    }


def _auc_from_ranks(codes: np.ndarray, y: np.ndarray, ranks: np.ndarray, groups: int) -> np.ndarray:
    """Mann-Whitney AUC per group code, from ranks within each group (NaN where a group has one class)."""
    n = np.bincount(codes, minlength=groups)
    pos = np.bincount(codes, weights=y, minlength=groups)
    rank_sum = np.bincount(codes, weights=ranks * y, minlength=groups)
    neg = n - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((pos > 0) & (neg > 0), (rank_sum - pos * (pos + 1) / 2) / (pos * neg), np.nan)


def score(y: np.ndarray, p: np.ndarray, label: np.ndarray | None = None,
          names: Sequence[str] = METRICS) -> dict[str, float]:
    """The row metrics ``names`` of probabilities ``p`` (and calls ``label``, default p >= 0.5) for ``y``.

    Plain NumPy (ties in AUC count half, as in scikit-learn): the evaluation scores
    hundreds of windows and subsets, where scikit-learn's input checks cost more than the sums.
    """
    y, p = np.asarray(y, float), np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    if not len(y):
        return dict.fromkeys(names, float("nan"))
    label = (p >= 0.5) if label is None else np.asarray(label).astype(bool)
    up, down = y == 1, y == 0
    both = up.any() and down.any()
    compute = {
        "accuracy": lambda: np.mean(label == up),
        "balanced_accuracy": lambda: (label[up].mean() + (~label[down]).mean()) / 2 if both else np.nan,
        "roc_auc": lambda: _auc_from_ranks(np.zeros(len(y), int), y, stats.rankdata(p), 1)[0],
        "log_loss": lambda: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)),
        "brier": lambda: np.mean((p - y) ** 2),
    }
    return {name: float(compute[name]()) for name in names}


def _scorers() -> list[tuple[str, str, str | None]]:
    """(metric prefix, probability column, call column) of the model and of each baseline."""
    return [("", "probability", None), *((f"baseline_{b}_", f"p_{b}", f"call_{b}") for b in BASELINES)]


def _centred_ranks(codes: np.ndarray, values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks within each group, those ranks minus their group's mean)."""
    ranks = pd.Series(values).groupby(codes).rank(method="average").to_numpy()
    mean = np.bincount(codes, weights=ranks, minlength=len(counts)) / np.maximum(counts, 1)
    return ranks, ranks - mean[codes]


def _per_date(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """``<prefix>date_auc`` and ``<prefix>date_ic`` of every scorer, one value per date of ``rows``.

    The IC is the Spearman correlation within a date: 0 where the probability is
    constant on the date (it ranks nothing), NaN where the returns are all equal or the
    date has fewer than three rows.
    """
    codes, days = pd.factorize(rows["date"], sort=True)
    index = pd.Index(days, name="date")
    counts = np.bincount(codes, minlength=len(days))
    tiny = 1e-9 * np.maximum(counts, 1) ** 3
    y = rows["target"].to_numpy(float)
    _, dr = _centred_ranks(codes, rows["next_ret"].to_numpy(float), counts)
    var_r = np.bincount(codes, weights=dr * dr, minlength=len(days))
    out = {}
    for prefix, column, _ in _scorers():
        ranks, dp = _centred_ranks(codes, rows[column].to_numpy(float), counts)
        cov = np.bincount(codes, weights=dp * dr, minlength=len(days))
        var_p = np.bincount(codes, weights=dp * dp, minlength=len(days))
        with np.errstate(divide="ignore", invalid="ignore"):
            ic = np.where(var_p > tiny, cov / np.sqrt(var_p * var_r), 0.0)
        out[f"{prefix}date_auc"] = pd.Series(_auc_from_ranks(codes, y, ranks, len(days)), index=index)
        out[f"{prefix}date_ic"] = pd.Series(np.where((var_r > tiny) & (counts >= 3), ic, np.nan), index=index)
    return out


def date_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Per date of ``frame``: every ALL_DATE_METRICS of the model and each baseline (columns ``<prefix><metric>``)."""
    found = _per_date(frame)
    moved = _per_date(frame[frame["moved"] == 1])
    out = found | {key.replace("date_", "moved_date_"): values for key, values in moved.items()}
    return pd.DataFrame(out).sort_index()


def _row_scores(frame: pd.DataFrame, metrics: Sequence[str]) -> dict[str, float]:
    """The row metrics among ``metrics`` of the model and each baseline on ``frame``, and its counts."""
    moved = frame[frame["moved"] == 1]
    out = {"rows": float(len(frame)), "moved_rows": float(len(moved)), "dates": float(frame["date"].nunique())}
    for prefix, column, call in _scorers():
        for subset, rows in (("", frame), ("moved_", moved)):
            names = [m for m in METRICS if f"{subset}{m}" in metrics]
            if names:
                calls = None if call is None else rows[call].to_numpy()
                values = score(rows["target"].to_numpy(), rows[column].to_numpy(), calls, names)
                out |= {f"{prefix}{subset}{k}": v for k, v in values.items()}
    return out


def _date_means(per_date: pd.DataFrame, metrics: Sequence[str]) -> dict[str, float]:
    return {f"{prefix}{name}": _nanmean(per_date[f"{prefix}{name}"].to_numpy())
            for prefix, _, _ in _scorers() for name in ALL_DATE_METRICS if name in metrics}


def score_window(frame: pd.DataFrame, metrics: Sequence[str] = ALL_METRICS) -> dict[str, float]:
    """Every metric of one test window: ``<metric>`` of the model, ``baseline_<name>_<metric>`` of each baseline.

    ``frame`` holds date, target, moved, next_ret, probability and ``p_``/``call_<baseline>``.
    A date metric of a window is the mean of its dates' values.
    """
    return _row_scores(frame, metrics) | _date_means(date_values(frame), metrics)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _nansd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a t-interval of the mean of per-date ``values`` (one value a cluster; NaNs dropped)."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    mean = _nanmean(finite)
    if len(finite) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + level) / 2, len(finite) - 1)) * finite.std(ddof=1) / np.sqrt(len(finite))
    return mean, mean - half, mean + half


def across_folds(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """``cv_mean_<key>`` and ``cv_sd_<key>`` of every fold metric: the folds' mean and spread, nothing pooled."""
    out = {}
    for key in (k for k in per_fold[0] if k not in COUNTS):
        values = np.array([fold[key] for fold in per_fold], float)
        out[f"cv_mean_{key}"], out[f"cv_sd_{key}"] = _nanmean(values), _nansd(values)
    return out


def date_intervals(per_date: pd.DataFrame, metrics: Sequence[str] = ALL_DATE_METRICS) -> dict[str, float]:
    """``dates_mean_``, ``dates_low_``, ``dates_high_<key>``: each per-date metric over the dates of a `date_values`."""
    out = {}
    for prefix, _, _ in _scorers():
        for name in (m for m in ALL_DATE_METRICS if m in metrics):
            key = f"{prefix}{name}"
            out[f"dates_mean_{key}"], out[f"dates_low_{key}"], out[f"dates_high_{key}"] = interval(
                per_date[key].to_numpy())
    return out


def walk_forward_scores(oos: pd.DataFrame, metrics: Sequence[str] = ALL_METRICS
                        ) -> tuple[list[dict[str, float]], pd.DataFrame]:
    """`score_window` of each fold of the out-of-sample frame in fold order, and the `date_values` of all its dates."""
    per_fold, dated = [], []
    for _, rows in oos.groupby("fold", sort=True):
        dated.append(date_values(rows))
        per_fold.append(_row_scores(rows, metrics) | _date_means(dated[-1], metrics))
    return per_fold, pd.concat(dated)


def breakdown(oos: pd.DataFrame) -> dict[str, float]:
    """BREAKDOWN_METRICS by liquidity bucket and by regime: ``by_<kind>_<group>_`` + the walk-forward keys.

    A fold without rows of a group adds nothing to that group's fold mean.
    """
    out = {}
    for kind, groups in (("liquidity", LIQUIDITY_BUCKETS), ("regime", REGIMES)):
        for group in groups:
            rows = oos[oos[kind] == group]
            if rows.empty:
                continue
            per_fold, per_date = walk_forward_scores(rows, BREAKDOWN_METRICS)
            found = across_folds(per_fold) | date_intervals(per_date, BREAKDOWN_METRICS)
            out |= {f"by_{kind}_{group}_{k}": v for k, v in found.items()}
    return out


@dataclass(frozen=True)
class Versus:
    """The model against the strongest baseline on one metric of one scope."""

    metric: str
    model: float
    baseline: str
    baseline_value: float

    @property
    def edge(self) -> float:
        """How far the model is ahead (higher is better whatever the metric; negative: behind)."""
        diff = self.model - self.baseline_value
        return -diff if self.metric in LOWER_IS_BETTER else diff

    @property
    def beats(self) -> bool:
        return bool(self.edge > 0)


def versus(metrics: dict[str, float], scope: str) -> dict[str, Versus]:
    """For each metric of ``scope`` (a key prefix such as ``cv_mean_``), the model against its strongest baseline."""
    out = {}
    for metric in ALL_METRICS:
        values = {b: metrics.get(f"{scope}baseline_{b}_{metric}", np.nan) for b in BASELINES}
        values = {b: v for b, v in values.items() if np.isfinite(v)}
        if not values:
            continue
        pick = min if metric in LOWER_IS_BETTER else max
        best = pick(values, key=values.__getitem__)
        out[metric] = Versus(metric, metrics[f"{scope}{metric}"], best, values[best])
    return out


@dataclass(frozen=True)
class Report:
    """Everything training logs about skill: ``metrics`` flat, per fold, and the model vs the strongest baseline.

    ``versus["cv"]`` compares fold means, ``versus["holdout"]`` the holdout's figures.
    """

    per_fold: list[dict[str, float]]
    metrics: dict[str, float]
    versus: dict[str, dict[str, Versus]]


def report(oos: pd.DataFrame, holdout: pd.DataFrame | None) -> Report:
    """The figures of walk-forward predictions ``oos`` and of the holdout's, with the edges over baselines.

    Keys: ``last_fold_*`` (the newest fold), ``cv_mean_*``/``cv_sd_*``, ``dates_*`` (all
    out-of-sample dates), ``by_*`` (breakdowns), ``holdout_*`` and ``holdout_dates_low_/high_*``,
    and ``<scope>_edge_<metric>`` (model minus strongest baseline, higher is better).
    """
    per_fold, per_date = walk_forward_scores(oos)
    metrics = {f"last_fold_{k}": v for k, v in per_fold[-1].items()}
    metrics |= across_folds(per_fold) | date_intervals(per_date) | breakdown(oos)
    scopes = {"cv": "cv_mean_"}
    if holdout is not None:
        held_dates = date_values(holdout)
        found = _row_scores(holdout, ALL_METRICS) | _date_means(held_dates, ALL_METRICS)
        found |= {k: v for k, v in date_intervals(held_dates).items() if not k.startswith("dates_mean_")}
        metrics |= {f"holdout_{k}": v for k, v in found.items()}
        scopes["holdout"] = "holdout_"
    compared = {scope: versus(metrics, prefix) for scope, prefix in scopes.items()}
    for scope, found in compared.items():
        metrics |= {f"{scope}_edge_{m}": v.edge for m, v in found.items()}
    return Report(per_fold, metrics, compared)


def gate_score(metrics: dict[str, float], metric: str, prefix: str = "") -> float:
    """The gate's higher-is-better value of ``metric`` (log loss is negated)."""
    if metric == "neg_log_loss":
        return -metrics[f"{prefix}log_loss"]
    return metrics[f"{prefix}{metric}"]
