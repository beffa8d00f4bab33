"""Micro-batch durations and throughput, read from the streaming job's own checkpoint.

The serving database keeps no per-batch figures, but Spark's checkpoint does, for its
last ``spark.sql.streaming.minBatchesToRetain`` (100) batches: ``offsets/<id>`` is written
when batch ``id`` is planned (a version line, metadata JSON with ``batchTimestampMs``, then
one line per source with its end offsets, ``{"topic": {"partition": offset}}``) and
``commits/<id>`` when it has finished. So a batch's duration is the commit file's time
minus its planned time, and its records are its end offsets minus the previous batch's.
The first retained batch only serves as the baseline of the next.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["batch", "started_ms", "committed_ms", "duration_s", "records", "records_per_s"]


def _planned(path: Path) -> tuple[int, int] | None:
    """(batchTimestampMs, sum of every source's end offsets) of one offsets file; None when unreadable."""
    try:
        lines = path.read_text().splitlines()
        started = int(json.loads(lines[1])["batchTimestampMs"])
        total = sum(int(offset) for line in lines[2:] if line.strip() not in ("", "-")
                    for partitions in json.loads(line).values() for offset in partitions.values())
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return started, total


def micro_batches(checkpoint: Path, last: int = 100) -> pd.DataFrame:
    """The last ``last`` committed micro-batches: when each started and committed, seconds, records, records/s."""
    offsets, commits = checkpoint / "offsets", checkpoint / "commits"
    if not offsets.is_dir():
        return pd.DataFrame(columns=COLUMNS)
    ids = sorted(int(p.name) for p in offsets.iterdir() if p.name.isdigit())[-(last + 1):]
    rows, previous = [], None
    for batch in ids:
        planned = _planned(offsets / str(batch))
        commit = commits / str(batch)
        if planned is None:
            previous = None
            continue
        started, total = planned
        if previous is not None and commit.exists():
            committed = commit.stat().st_mtime_ns // 1_000_000
            seconds = max(committed - started, 1) / 1000
            records = total - previous
            rows.append([batch, started, committed, seconds, records, records / seconds])
        previous = total
    return pd.DataFrame(rows, columns=COLUMNS)
