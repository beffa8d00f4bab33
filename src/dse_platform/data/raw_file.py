"""One raw file as read: its text (any encoding DSE users have), its records, and the raw bar layout parsers fill."""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import pandas as pd

from dse_platform.data.instruments import canonical_symbol
from dse_platform.errors import PlatformError

#: columns of the raw layout every parser produces (values still text, except line numbers)
RAW_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume", "trades", "value_mn",
               "ycp", "source_file", "source_line", "source_format", "price_basis"]

#: what a source's prices are: ``raw``, the prices DSE traded at (its own pages and end-of-day bars), or
#: ``adjusted``, back-adjusted for bonus/rights issues and splits (prices divided at every corporate action)
PriceBasis = Literal["raw", "adjusted"]
PRICE_BASES: tuple[PriceBasis, ...] = ("raw", "adjusted")
#: the basis of a source that does not declare one, of DSE's own pages, and of a store written before the field
DEFAULT_BASIS: PriceBasis = "raw"


@dataclass
class ParsedFile:
    """One raw file read into the raw layout, plus what the reader noticed about the file itself."""

    path: Path
    fmt: str
    rows: pd.DataFrame
    dropped_columns: list[str] = field(default_factory=list)
    truncated_lines: list[tuple[int, str]] = field(default_factory=list)


def parse_price_basis(value: str) -> PriceBasis:
    """``--price-basis``: refused when it is neither basis, as a typo must not relabel a whole history."""
    basis = value.strip().lower()
    if basis not in PRICE_BASES:
        raise PlatformError(f"--price-basis '{value}' is not raw or adjusted",
                            "pass --price-basis raw (DSE's traded prices) or --price-basis adjusted "
                            "(back-adjusted for bonus/rights issues and splits)")
    return cast(PriceBasis, basis)


def read_text(path: Path) -> str:
    """File contents as text: UTF-8 (BOM allowed), UTF-16 with a BOM, gzip-compressed or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise PlatformError(f"{path}: corrupt gzip data ({exc})", "re-copy the file from its source") from exc
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16")
    if b"\x00" in raw[:4096]:
        raise PlatformError(f"{path}: binary data (NUL bytes), not a CSV text file",
                            "check that the file is a DSE CSV export and not a spreadsheet or archive")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlatformError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "re-save the file as UTF-8 (e.g. iconv -f cp1252 -t utf-8)") from exc


def norm_header(name: str) -> str:
    return name.strip().strip('"').strip().lower()


def symbol_from_filename(path: Path) -> str:
    """Code of a per-instrument file: the file name without .csv/.csv.gz (``AMCL(PRAN)`` kept, ``DSEX`` -> 00DSEX)."""
    name = path.name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return canonical_symbol(name)


def split_records(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header cells and (line number, cells) of every non-blank CSV record."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    rows = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    return header, rows


def raw_frame(records: list[dict], path: Path, fmt: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=RAW_COLUMNS)
    frame["source_file"] = path.name
    frame["source_format"] = fmt
    return frame
