"""Full retrain, timed by stage, beside a bare fit of the same recipe on the same matrix (its ceiling).

The ceiling is the least any retrain must spend: one fit of the configured recipe on every row. The
retrain is `training.train` as `dse train` runs it (walk-forward folds, final fit, evaluation, MLflow
logging), registering nothing. QUICK trains on the first 100 instruments only. Never part of CI.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dse_platform.config import get_settings
from dse_platform.data import store
from dse_platform.model import dataset, recipes, training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, platform

QUICK_INSTRUMENTS = 100


def run(quick: bool) -> list[Figure]:
    """Wall time of the retrain and each stage, and of the bare fit, over 1 (quick) or 2 runs."""
    settings = get_settings()
    symbols = sorted(store.read_bars(settings.store_dir, columns=["symbol"])["symbol"].unique())
    chosen = symbols[:QUICK_INSTRUMENTS] if quick else None
    data = dataset.build(settings.store_dir, symbols=chosen)
    size = (f"{len(data.frame):,} rows, {data.frame['symbol'].nunique()} instruments, "
            f"recipe {settings.train_recipe}")
    bare = Figure("train", "bare fit (same recipe, same rows)", "s", size)
    total = Figure("train", "full retrain", "s", size, ceiling=bare.name, goal="< 20 s" if not quick else "")
    stages: dict[str, Figure] = {}
    for _ in range(1 if quick else 2):
        started = time.perf_counter()
        recipes.get(settings.train_recipe, settings).fit(data.X, data.y)
        bare.add(time.perf_counter() - started)
        started = time.perf_counter()
        result = training.train(settings, symbols=chosen, register=False)
        total.add(time.perf_counter() - started)
        for stage, seconds in result.timings.items():
            stages.setdefault(stage, Figure("train", f"retrain stage {stage.removesuffix('_s')}", "s", size,
                                            ceiling=total.name)).add(seconds)
    return [bare, total, *stages.values()]


def main() -> None:
    with platform():
        for figure in run("--quick" in sys.argv):
            print(f"{figure.name}: median {figure.summary()['median']:.1f} {figure.unit} (load {figure.loads[-1]})")


if __name__ == "__main__":
    main()
