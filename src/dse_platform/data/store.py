"""The canonical bar store: a year-partitioned Parquet dataset read by pandas and Spark alike.

Layout under ``var/store`` (or DSE_STORE_DIR)::

    bars/year=YYYY/*.parquet   canonical bars (symbol, date, OHLC, volume, trades, value_mn,
                               sector, category, quality_flags, source_file)
    calendar.json              the learned DSE trading calendar
    rejects.csv                every rejected row with its rule and reason
    quality_report.json        counts per rule and per instrument
    quality_by_symbol.csv      the per-instrument counts as a table

A store is replaced atomically: a new one is written beside the old and swapped in
by rename, so a failed ingest leaves the previous store as it was.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dse_platform.data.trading_calendar import TradingCalendar
from dse_platform.errors import PlatformError

SCHEMA = pa.schema([
    ("symbol", pa.string()), ("date", pa.date32()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
    ("volume", pa.float64()), ("trades", pa.int64()), ("value_mn", pa.float64()),
    ("sector", pa.string()), ("category", pa.string()), ("quality_flags", pa.string()), ("source_file", pa.string()),
])


def bars_dir(store: Path) -> Path:
    return store / "bars"


def exists(store: Path) -> bool:
    return (store / "calendar.json").exists() and bars_dir(store).exists()


def write_store(store: Path, bars: pd.DataFrame, calendar: TradingCalendar,
                extra_files: dict[str, str | bytes]) -> None:
    """Write a complete store into a temporary sibling folder, then swap it in."""
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        frame = bars.assign(year=pd.to_datetime(bars["date"]).dt.year).sort_values(["date", "symbol"])
        table = pa.Table.from_pandas(frame, schema=SCHEMA.append(pa.field("year", pa.int32())),
                                     preserve_index=False)
        ds.write_dataset(table, bars_dir(tmp), format="parquet", partitioning=["year"],
                         partitioning_flavor="hive", existing_data_behavior="error",
                         file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"))
        calendar.save(tmp / "calendar.json")
        for name, content in extra_files.items():
            target = tmp / name
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        old = store.with_name(f".{store.name}.old-{os.getpid()}")
        if store.exists():
            store.rename(old)
        tmp.rename(store)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_bars(store: Path, start: dt.date | None = None, end: dt.date | None = None,
              symbols: Iterable[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Bars ordered by (date, symbol), optionally filtered; ``date`` comes back as datetime.date."""
    if not exists(store):
        raise PlatformError(f"no bar store at {store}", "run `dse ingest` first")
    dataset = ds.dataset(bars_dir(store), format="parquet", partitioning="hive")
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
    table = dataset.to_table(columns=list(dict.fromkeys([*cols, "date", "symbol"])), filter=cond)
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get, date_as_object=True)
    return frame.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)


def read_calendar(store: Path) -> TradingCalendar:
    path = store / "calendar.json"
    if not path.exists():
        raise PlatformError(f"no trading calendar at {path}", "run `dse ingest` first")
    return TradingCalendar.load(path)


def parquet_files(store: Path) -> list[Path]:
    return sorted(bars_dir(store).rglob("*.parquet"))


def row_count(store: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files(store))
