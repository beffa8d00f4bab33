"""Full retrain on every shipped instrument, timed by stage, against a ceiling measured in the same run.

Needs MLflow (`dse up`) and a store (`dse ingest`). The ceiling is one bare scikit-learn
fit of the same pipeline on the same matrix: the least any retrain must spend. Reports
the wall time of `training.train` (walk-forward folds and MLflow logging included) split
by stage, its ratio to that ceiling, and the goal (< 60 s). Registers nothing. Never part of CI.
"""

from __future__ import annotations

import time

from dse_platform.config import get_settings
from dse_platform.model import dataset, training


def main() -> None:
    settings = get_settings()
    data = dataset.build(settings.store_dir)
    started = time.perf_counter()
    training.pipeline(settings.train_c).fit(data.X, data.y)
    ceiling = time.perf_counter() - started
    started = time.perf_counter()
    result = training.train(settings, register=False)
    total = time.perf_counter() - started
    stages = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in result.timings.items())
    print(f"retrain: {len(data.frame):,} rows, {data.frame['symbol'].nunique()} instruments, "
          f"{len(result.folds)} folds: {total:.1f}s ({stages})")
    print(f"ceiling (one bare fit of the same pipeline on the same rows): {ceiling:.1f}s; "
          f"ratio {total / ceiling:.1f}x; goal (< 60 s): {'met' if total < 60 else 'not met'}")


if __name__ == "__main__":
    main()
