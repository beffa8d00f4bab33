"""The store swap is atomic for readers, writers are serialised by a lock, and old plain-folder stores migrate."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dse_platform.data import store
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError
from tests.unit.model.synthetic import random_bars


def _bars(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, TradingCalendar]:
    bars = pd.concat([random_bars(f"S{i}", n, seed=seed + i) for i in range(5)], ignore_index=True)
    bars = bars.assign(trades=pd.array([None] * len(bars), dtype="Int64"), value_mn=np.nan, sector=None,
                       category=None, quality_flags="", source_file=f"seed{seed}")
    days = sorted(bars["date"].unique())
    return bars, TradingCalendar(tuple(days), ((days[0], days[-1]),))


def test_a_reader_never_sees_the_store_missing_during_repeated_writes(tmp_path: Path) -> None:
    path = tmp_path / "store"
    bars, calendar = _bars()
    store.write_store(path, bars, calendar, {})
    failures: list[BaseException] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                assert len(store.read_bars(path)) == len(bars)
                reads += 1
            except BaseException as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    for seed in range(15):
        store.write_store(path, _bars(seed=seed)[0], calendar, {"note.txt": str(seed)})
    done.set()
    thread.join()
    assert failures == [] and reads > 0
    assert path.is_symlink() and (path / "note.txt").read_text() == "14"
    generations = [p for p in tmp_path.iterdir() if p.name.startswith(".store-")]
    assert len(generations) == 2  # the current one and the one a slow reader may still be on


def test_a_plain_folder_store_is_migrated_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "store"
    bars, calendar = _bars()
    store.write_store(path, bars, calendar, {})
    legacy = tmp_path / "legacy"
    (path.resolve()).rename(legacy)
    path.unlink()
    legacy.rename(path)  # a store written by an earlier version: a plain folder
    assert not path.is_symlink() and len(store.read_bars(path)) == len(bars)
    store.write_store(path, bars.head(10), calendar, {})
    assert path.is_symlink() and len(store.read_bars(path)) == 10


def test_a_second_writer_waits_for_the_lock_then_refuses_clearly(tmp_path: Path) -> None:
    path = tmp_path / "store"
    held = threading.Event()
    release = threading.Event()

    def first_writer() -> None:
        with store.writer_lock(path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=first_writer)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with pytest.raises(PlatformError, match="another writer") as err, store.writer_lock(path, wait_s=0.5):
        pass
    assert time.monotonic() - started >= 0.5 and "wait for" in err.value.fix
    release.set()
    thread.join()
    # free again once the first writer is done, and re-entrant for the holder (fold calls write_store inside)
    with store.writer_lock(path, wait_s=0.5), store.writer_lock(path, wait_s=0):
        pass


def test_a_failed_write_leaves_the_old_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    bars, calendar = _bars()
    store.write_store(path, bars, calendar, {})
    with pytest.raises(KeyError):
        store.write_store(path, bars.drop(columns=["close"]), calendar, {})
    assert len(store.read_bars(path)) == len(bars)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".store-")]) == 1
