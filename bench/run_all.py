"""`make bench`: every benchmark on the benchmarks' own platform, then a table and the results files.

Runs each module's ``run(quick)`` inside `harness.platform` (a private `dse up --no-airflow` under
var/bench/platform, stopped afterwards when started here), prints the figures as a table and writes
``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.md``. A benchmark that fails is
reported and the others still run. ``--quick`` (``make bench QUICK=1``): fewer repeats and smaller
data, under 5 minutes. Never part of CI: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, platform, table, write

BENCHES = ("bench_replay", "bench_train", "bench_stream", "profile_stream", "bench_dashboard", "bench_demo",
           "bench_scaling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller data (under 5 minutes)")
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run these benchmarks alone")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC)
    command = "make bench" + (" QUICK=1" if args.quick else "")
    if args.quick:
        print("bench: QUICK run: fewer repeats and smaller data than `make bench`; figures are indicative only")
    figures: list[Figure] = []
    failed: list[str] = []
    with platform() as settings:
        for name in args.only or BENCHES:
            began = time.perf_counter()
            print(f"bench: {name} ...", flush=True)
            try:
                found = importlib.import_module(name).run(args.quick)
            except Exception as exc:  # one broken benchmark must not cost the others' figures
                traceback.print_exc()
                failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            figures += found
            print(f"bench: {name} done in {time.perf_counter() - began:.0f} s", flush=True)
        path = write(figures, args.quick, started, settings, command, failed)
    print("\n".join(table(figures)))
    for line in failed:
        print(f"bench: FAILED {line}")
    print(f"bench: results in {path} and {path.with_name('latest.md')}")


if __name__ == "__main__":
    main()
