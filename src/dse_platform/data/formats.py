"""Raw DSE file formats, recognised by their header, parsed into one raw bar layout.

Three layouts exist in the wild (see data/README.md):

* per-instrument end-of-day files ``<CODE>.csv``: ``date,open,high,low,close,volume,trade``
  (MM/DD/YYYY; sometimes with junk ``Unnamed: N`` columns),
* investing.com exports: ``"Date","Price","Open","High","Low","Vol.","Change %"`` with quoted
  thousands separators, percentages and K/M/B volumes, newest first,
* DSE's day-end archive: ``#,DATE,Scrip,LTP*,High,Low,Open,Close,YCP,Trade,VALUE (mn),Volume``.

Every parser keeps values as text where they do not parse, so that the quality rules
(not the parser) decide what happens to a bad cell and nothing is dropped on the way.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dse_platform.data.instruments import DSEX, canonical_symbol
from dse_platform.errors import PlatformError

#: columns of the raw layout every parser produces (values still text, except line numbers)
RAW_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume", "trades", "value_mn",
               "ycp", "source_file", "source_line", "source_format"]


@dataclass
class ParsedFile:
    """One raw file read into the raw layout, plus what the reader noticed about the file itself."""

    path: Path
    fmt: str
    rows: pd.DataFrame
    dropped_columns: list[str] = field(default_factory=list)
    truncated_lines: list[tuple[int, str]] = field(default_factory=list)


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


def _norm(name: str) -> str:
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


def _frame(records: list[dict], path: Path, fmt: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=RAW_COLUMNS)
    frame["source_file"] = path.name
    frame["source_format"] = fmt
    return frame


def parse_eod(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """Per-instrument EOD file; the trading code comes from the file name."""
    names = [_norm(h) for h in header]
    junk = [h for h in header if re.match(r"^\s*unnamed: \d+\s*$", h, re.I) or not h.strip()]
    pos = {n: names.index(n) for n in ("date", "open", "high", "low", "close", "volume", "trade")}
    symbol = symbol_from_filename(path)
    records, truncated = [], []
    needed = max(pos.values()) + 1
    for line, cells in rows:
        if len(cells) < needed:
            truncated.append((line, ",".join(cells)))
            continue
        records.append({"symbol": symbol, "date": cells[pos["date"]], "open": cells[pos["open"]],
                        "high": cells[pos["high"]], "low": cells[pos["low"]], "close": cells[pos["close"]],
                        "volume": cells[pos["volume"]], "trades": cells[pos["trade"]], "value_mn": "",
                        "ycp": "", "source_line": line})
    return ParsedFile(path, "dse-eod", _frame(records, path, "dse-eod"), junk, truncated)


def _investing_number(text: str) -> str:
    """'4,719.39' -> '4719.39'; '1.2M' -> '1200000'; '' stays ''. Unparseable text is kept for the rules."""
    value = text.strip().replace(",", "")
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)([KMB])", value, re.I)
    if match:
        scale = {"K": 1e3, "M": 1e6, "B": 1e9}[match.group(2).upper()]
        return repr(float(match.group(1)) * scale)
    return value


def parse_investing(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """investing.com export of the DSEX index (the only index this layout is shipped for)."""
    names = [_norm(h) for h in header]
    pos = {n: names.index(n) for n in ("date", "price", "open", "high", "low", "vol.")}
    symbol = DSEX
    records, truncated = [], []
    for line, cells in rows:
        if len(cells) < len(names) - 1:
            truncated.append((line, ",".join(cells)))
            continue
        volume = _investing_number(cells[pos["vol."]])
        records.append({"symbol": symbol, "date": cells[pos["date"]],
                        "open": _investing_number(cells[pos["open"]]),
                        "high": _investing_number(cells[pos["high"]]),
                        "low": _investing_number(cells[pos["low"]]),
                        "close": _investing_number(cells[pos["price"]]),
                        "volume": "", "trades": "", "value_mn": volume, "ycp": "", "source_line": line})
    return ParsedFile(path, "investing", _frame(records, path, "investing"), [], truncated)


def parse_day_end(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """DSE's day-end archive; an instrument that did not trade shows 0 prices and Close = YCP."""
    names = [_norm(h) for h in header]
    code_col = "scrip" if "scrip" in names else "trading code"
    pos = {n: names.index(n) for n in ("date", code_col, "high", "low", "close", "ycp", "trade", "volume")}
    open_col = "open" if "open" in names else "openp*"
    close_col = "close" if "close" in names else "closep*"
    pos["open"], pos["close"] = names.index(open_col), names.index(close_col)
    pos["value"] = names.index("value (mn)")
    records, truncated = [], []
    for line, cells in rows:
        if len(cells) < len(names):
            truncated.append((line, ",".join(cells)))
            continue
        num = {key: cells[i].replace(",", "").strip() for key, i in pos.items()}
        records.append({"symbol": canonical_symbol(cells[pos[code_col]]), "date": cells[pos["date"]],
                        "open": num["open"], "high": num["high"], "low": num["low"], "close": num["close"],
                        "volume": num["volume"], "trades": num["trade"], "value_mn": num["value"],
                        "ycp": num["ycp"], "source_line": line})
    return ParsedFile(path, "day-end", _frame(records, path, "day-end"), [], truncated)


Parser = Callable[[Path, list[str], list[tuple[int, list[str]]]], ParsedFile]

#: (format name, columns that must all be in the header, parser); most specific first
FORMATS: list[tuple[str, set[str], Parser]] = [
    ("investing", {"date", "price", "open", "high", "low", "vol.", "change %"}, parse_investing),
    ("day-end", {"date", "high", "low", "ycp", "trade", "value (mn)", "volume"}, parse_day_end),
    ("dse-eod", {"date", "open", "high", "low", "close", "volume", "trade"}, parse_eod),
]


def detect_format(path: Path, header: list[str]) -> tuple[str, Parser]:
    names = {_norm(h) for h in header}
    for fmt, required, parser in FORMATS:
        if required <= names and (fmt != "day-end" or names & {"scrip", "trading code"}):
            return fmt, parser
    raise PlatformError(
        f"{path}: unknown file format; columns seen: {', '.join(h.strip() for h in header) or '(none)'}",
        "expected a DSE per-instrument EOD file (date,open,high,low,close,volume,trade), an investing.com "
        "export or DSE's day-end archive layout")


def parse_file(path: Path, text: str | None = None) -> ParsedFile:
    """Parse one raw file (its ``text`` when already read) in whichever known layout its header shows."""
    header, rows = split_records(read_text(path) if text is None else text)
    _, parser = detect_format(path, header)
    return parser(path, header, rows)
