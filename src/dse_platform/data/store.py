"""The canonical bar store: a year-partitioned Parquet dataset read by pandas and Spark alike.

Layout under ``var/store`` (or DSE_STORE_DIR)::

    bars/year=YYYY/*.parquet   canonical bars (symbol, date, OHLC, volume, trades, value_mn,
                               sector, category, quality_flags, source_file, price_basis)
    calendar.json              the learned DSE trading calendar
    rejects.csv                every rejected row with its rule and reason
    quality_report.json        counts per rule and per instrument
    quality_by_symbol.csv      the per-instrument counts as a table

``store`` is a symlink to a generation folder beside it (``.store-<id>``). A write fills a
new generation, then replaces the symlink with ``os.replace`` (atomic): a reader sees the
old store or the new one, never none, and a failed write leaves the old one as it was.
The previous generation is kept until the next write, so a read that began before a swap
finishes on it. Writers hold an exclusive ``fcntl`` lock on ``<store>.lock`` (`writer_lock`)
for their whole read-modify-write. A plain-folder store from earlier versions becomes a
generation on its next write.

``price_basis`` (``raw`` or ``adjusted``) is one value per instrument: `write_store` refuses a
series spliced from both. A store written before the column existed reads as raw (what it
held: DSE's traded prices, or files not declared otherwise) and gains the column on its next write.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dse_platform.data.raw_file import DEFAULT_BASIS, PRICE_BASES, PriceBasis
from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError

SCHEMA = pa.schema([
    ("symbol", pa.string()), ("date", pa.date32()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.float64()), ("trades", pa.int64()), ("value_mn", pa.float64()),
    ("sector", pa.string()), ("category", pa.string()), ("quality_flags", pa.string()), ("source_file", pa.string()),
    ("price_basis", pa.string()),
])
#: the dataset as written: the bar columns and the hive partition
_FILE_SCHEMA = SCHEMA.append(pa.field("year", pa.int32()))
#: how long a writer waits for another writer's lock before refusing
LOCK_WAIT_S = 600.0
_READ_ATTEMPTS = 3
_held = threading.local()
T = TypeVar("T")


def bars_dir(store: Path) -> Path:
    return store / "bars"


def exists(store: Path) -> bool:
    return (store / "calendar.json").exists() and bars_dir(store).exists()


def lock_path(store: Path) -> Path:
    return store.with_name(f"{store.name}.lock")


@contextmanager
def writer_lock(store: Path, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the store's exclusive writer lock; re-entrant within a thread, waits ``wait_s`` for another writer."""
    key = str(store.absolute())
    held: set[str] = _held.__dict__.setdefault("paths", set())
    if key in held:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(store), "a+") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PlatformError(f"another writer has held the store lock {lock_path(store)} for {wait_s:.0f} s",
                                        "wait for the running ingest or fold to finish (`dse status`), "
                                        "then run this again") from None
                time.sleep(0.2)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generations(store: Path) -> list[Path]:
    return [p for p in store.parent.glob(f".{store.name}-*") if p.is_dir() and not p.is_symlink()]


def _one_basis(bars: pd.DataFrame) -> pd.Series:
    """The bars' price basis (raw where none is given), refused unless known and one per instrument."""
    basis = bars["price_basis"].fillna(DEFAULT_BASIS) if "price_basis" in bars else \
        pd.Series(DEFAULT_BASIS, index=bars.index)
    unknown = sorted(set(basis.unique()) - set(PRICE_BASES))
    if unknown:
        raise PlatformError(f"price_basis {', '.join(map(repr, unknown))} is neither raw nor adjusted",
                            "this is a bug in the writer: report it")
    mixed = sorted(bars.loc[basis.groupby(bars["symbol"]).transform("nunique") > 1, "symbol"].unique())
    if mixed:
        raise PlatformError(f"the bars of {', '.join(mixed[:5])} come both raw and adjusted (price_basis); "
                            "the store keeps one basis per instrument",
                            "store each instrument in one basis (`dse ingest` refuses the mix for you)")
    return basis


def write_store(store: Path, bars: pd.DataFrame, calendar: TradingCalendar,
                extra_files: dict[str, str | bytes]) -> None:
    """Write a complete store into a new generation folder, then point the ``store`` symlink at it.

    ``bars`` without a ``price_basis`` column are raw, like a store written before the column.
    """
    with writer_lock(store):
        target = store.with_name(f".{store.name}-{uuid.uuid4().hex[:12]}")
        target.mkdir()
        try:
            frame = bars.assign(year=pd.to_datetime(bars["date"]).dt.year, price_basis=_one_basis(bars))
            table = pa.Table.from_pandas(frame.sort_values(["date", "symbol"]), schema=_FILE_SCHEMA,
                                         preserve_index=False)
            ds.write_dataset(table, bars_dir(target), format="parquet", partitioning=["year"],
                             partitioning_flavor="hive", existing_data_behavior="error",
                             file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"))
            calendar.save(target / "calendar.json")
            for name, content in extra_files.items():
                path = target / name
                path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
            previous = _swap(store, target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        for old in _generations(store):
            if old.name not in (target.name, previous):
                shutil.rmtree(old, ignore_errors=True)


def _swap(store: Path, target: Path) -> str | None:
    """Point ``store`` at ``target`` atomically; the name of the generation it pointed at before."""
    if store.exists() and not store.is_symlink():  # a plain folder from earlier versions becomes a generation
        store.rename(store.with_name(f".{store.name}-legacy-{uuid.uuid4().hex[:6]}"))
    previous = os.readlink(store) if store.is_symlink() else None
    link = store.with_name(f".{store.name}.link-{uuid.uuid4().hex[:6]}")
    link.symlink_to(target.name)
    os.replace(link, store)
    return previous


def _current(store: Path, read: Callable[[Path], T]) -> T:
    """``read`` on the generation ``store`` points at, again if a writer swapped it away mid-read."""
    for attempt in range(_READ_ATTEMPTS):
        root = store.resolve()
        try:
            return read(root)
        except OSError:
            if attempt == _READ_ATTEMPTS - 1 or store.resolve() == root:
                raise
    raise AssertionError("unreachable")


def _require(store: Path) -> None:
    if not exists(store):
        raise PlatformError(f"no bar store at {store}", "run `dse ingest` first")


def _dataset(root: Path) -> ds.Dataset:
    """The bars of one generation under the schema as written today: files from before the price_basis column
    read it as null, i.e. raw."""
    return ds.dataset(bars_dir(root), schema=_FILE_SCHEMA, format="parquet", partitioning="hive")


def read_bars(store: Path, start: dt.date | None = None, end: dt.date | None = None,
              symbols: Iterable[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Bars ordered by (date, symbol), optionally filtered; ``date`` comes back as datetime.date."""
    _require(store)
    cond = None
    if start is not None:
        cond = ds.field("date") >= pa.scalar(start, pa.date32())
    if end is not None:
        c = ds.field("date") <= pa.scalar(end, pa.date32())
        cond = c if cond is None else cond & c
    if symbols is not None:
        c = ds.field("symbol").isin(list(symbols))
        cond = c if cond is None else cond & c
    cols = columns or [f.name for f in SCHEMA]
    # the result is ordered by (date, symbol), so both are always read
    wanted = list(dict.fromkeys([*cols, "date", "symbol"]))
    table = _current(store, lambda root: _dataset(root).to_table(columns=wanted, filter=cond))
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get, date_as_object=True)
    if "price_basis" in frame:
        frame["price_basis"] = frame["price_basis"].fillna(DEFAULT_BASIS)
    return frame.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)


def read_price_basis(store: Path) -> dict[str, PriceBasis]:
    """The price basis the store holds for each instrument (raw for a store written before the column):
    what a new series of the instrument must match."""
    _require(store)
    pairs = _current(store, lambda root: _dataset(root).to_table(columns=["symbol", "price_basis"])
                     .group_by(["symbol", "price_basis"]).aggregate([]))
    return {symbol: basis or DEFAULT_BASIS for symbol, basis in zip(pairs["symbol"].to_pylist(),
                                                                     pairs["price_basis"].to_pylist(), strict=True)}


def read_calendar(store: Path) -> TradingCalendar:
    path = store / "calendar.json"
    if not path.exists():
        raise PlatformError(f"no trading calendar at {path}", "run `dse ingest` first")
    return _current(store, lambda root: TradingCalendar.load(root / "calendar.json"))


def read_extra(store: Path, names: Iterable[str]) -> dict[str, bytes]:
    """The named side files (rejects, quality report ...) the store holds, to carry into a rewrite."""
    return _current(store, lambda root: {name: (root / name).read_bytes() for name in names
                                         if (root / name).exists()})


def parquet_files(store: Path) -> list[Path]:
    return sorted(bars_dir(store).rglob("*.parquet"))


def row_count(store: Path) -> int:
    return _current(store, lambda root: sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files(root)))
