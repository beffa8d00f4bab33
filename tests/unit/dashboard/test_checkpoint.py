"""Micro-batch figures read from a checkpoint laid out as Spark writes it."""

from __future__ import annotations

from pathlib import Path

from dse_platform.dashboard.checkpoint import micro_batches
from tests.unit.dashboard.world import checkpoint_batch as _batch


def test_durations_and_records_per_batch(tmp_path: Path) -> None:
    t0 = 1_795_536_000_000
    _batch(tmp_path, 0, t0, {"dse.bars.v1": {"0": 100, "1": 50}, "dse.ticks.v1": {"0": 0}}, t0 + 4_000)
    _batch(tmp_path, 1, t0 + 5_000, {"dse.bars.v1": {"0": 600, "1": 550}, "dse.ticks.v1": {"0": 0}}, t0 + 7_000)
    _batch(tmp_path, 2, t0 + 8_000, {"dse.bars.v1": {"0": 700, "1": 550}, "dse.ticks.v1": {"0": 20}}, t0 + 8_500)
    _batch(tmp_path, 3, t0 + 9_000, {"dse.bars.v1": {"0": 900, "1": 550}, "dse.ticks.v1": {"0": 20}}, None)
    batches = micro_batches(tmp_path)
    # batch 0 is only the baseline; batch 3 has not committed yet
    assert list(batches["batch"]) == [1, 2]
    assert list(batches["records"]) == [1_000, 120]
    assert list(batches["duration_s"]) == [2.0, 0.5]
    assert list(batches["records_per_s"]) == [500.0, 240.0]


def test_no_checkpoint_and_an_unreadable_file(tmp_path: Path) -> None:
    assert micro_batches(tmp_path / "absent").empty
    _batch(tmp_path, 0, 0, {"t": {"0": 1}}, 1)
    (tmp_path / "offsets" / "1").write_text("v1\nnot json")
    _batch(tmp_path, 2, 10, {"t": {"0": 5}}, 20)
    assert micro_batches(tmp_path).empty  # the batch after an unreadable one has no baseline
