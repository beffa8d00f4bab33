"""spark-submit entry point of the streaming job (`dse stream` and the Airflow DAG submit this file).

    spark-submit --jars <var/jars/spark/*.jar> jobs/stream_predict.py [--trigger available-now] [--timeout S]

All logic lives in `dse_platform.serving.job`; settings come from DSE_* variables.
"""

from __future__ import annotations

import argparse
import sys

from dse_platform.config import get_settings
from dse_platform.data import store
from dse_platform.errors import PlatformError
from dse_platform.serving import job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", choices=["processing-time", "available-now"], default=None,
                        help="override DSE_STREAM_TRIGGER")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds (0: no limit)")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.trigger:
        settings = settings.model_copy(update={"stream_trigger": args.trigger})
    try:
        job.run(settings, store.read_calendar(settings.store_dir), args.timeout or None)
    except PlatformError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
