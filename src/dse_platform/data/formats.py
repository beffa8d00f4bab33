"""Raw DSE file formats, recognised by their header (or first line), parsed into one raw bar layout.

Layouts in the wild (see data/README.md), tried in the order of :data:`FORMATS`:

* per-instrument end-of-day files ``<CODE>.csv``: ``date,open,high,low,close,volume,trade``
  (MM/DD/YYYY; sometimes with junk ``Unnamed: N`` columns),
* investing.com exports: ``"Date","Price","Open","High","Low","Vol.","Change %"`` with quoted
  thousands separators, percentages and K/M/B volumes, newest first,
* DSE's day-end archive: ``#,DATE,Scrip,LTP*,High,Low,Open,Close,YCP,Trade,VALUE (mn),Volume``,
* one row per instrument and day with a trading-code column in DSE's or the scrapers' spellings
  (``trading_code,date,openning_price,...``, bdshare's ``date,trading_code,ltp,high,low,openp,closep,...``),
* generic per-instrument ``Date,Open,High,Low,Close,Volume`` in any case (code from the file name),
* the headerless end-of-day export ``ticker,date,open,high,low,close,volume`` (day order read off the data),
* anything else through an explicit :class:`ColumnMap`.

Each file also gets its price basis (``raw`` or ``adjusted``, see :func:`file_price_basis`): the
layout's own word (an ``Adj Close`` column), else ``--price-basis``, else raw.

Every parser keeps values as text where they do not parse, so that the quality rules
(not the parser) decide what happens to a bad cell and nothing is dropped on the way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dse_platform.data.instruments import DSEX, canonical_symbol
from dse_platform.data.raw_file import (
    DEFAULT_BASIS,
    ParsedFile,
    PriceBasis,
    norm_header,
    raw_frame,
    read_text,
    split_records,
    symbol_from_filename,
)
from dse_platform.errors import PlatformError


def parse_eod(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """Per-instrument EOD file; the trading code comes from the file name."""
    names = [norm_header(h) for h in header]
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
    return ParsedFile(path, "dse-eod", raw_frame(records, path, "dse-eod"), junk, truncated)


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
    names = [norm_header(h) for h in header]
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
    return ParsedFile(path, "investing", raw_frame(records, path, "investing"), [], truncated)


def parse_day_end(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """DSE's day-end archive; an instrument that did not trade shows 0 prices and Close = YCP."""
    names = [norm_header(h) for h in header]
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
    return ParsedFile(path, "day-end", raw_frame(records, path, "day-end"), [], truncated)


#: header spellings of a back-adjusted close (Yahoo's ``Adj Close``, scrapers' ``adj_close`` ...): the close of
#: last resort in :data:`ALIASES`, so a raw close beside one is what the layouts read (see :func:`file_price_basis`)
ADJUSTED_CLOSE = ("adj close", "adj. close", "adj_close", "adjclose", "adj close**", "adjusted close",
                  "adjusted_close")
#: raw-layout field -> the header spellings DSE (``OPENP*``, ``openning_price``), its scrapers (bdshare) and
#: generic exports use; the first one present wins
ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("trading_code", "trading code", "tradingcode", "scrip", "symbol", "ticker", "code"),
    "date": ("date",),
    "open": ("open", "openp", "openp*", "openning_price", "opening_price", "open_price"),
    "high": ("high", "high_price"),
    "low": ("low", "low_price"),
    "close": ("close", "closep", "closep*", "closing_price", "close_price", *ADJUSTED_CLOSE),
    "volume": ("volume", "vol"),
    "trades": ("trade", "trades"),
    "value_mn": ("value_mn", "value (mn)"),
    "ycp": ("ycp", "ycp*"),
}
#: fields every layout must provide (the symbol may come from the file name)
BAR_FIELDS = ("date", "open", "high", "low", "close")


def _positions(header: list[str]) -> dict[str, int]:
    names = [norm_header(h) for h in header]
    found = {f: next((names.index(a) for a in spellings if a in names), -1) for f, spellings in ALIASES.items()}
    return {f: i for f, i in found.items() if i >= 0}


def _parse_columns(path: Path, fmt: str, rows: list[tuple[int, list[str]]], pos: dict[str, int],
                   dates: dict[str, str] | None = None) -> ParsedFile:
    """Rows read by column position; the symbol from its column, else the file name; dates rewritten by ``dates``."""
    file_symbol = symbol_from_filename(path)
    records, truncated = [], []
    needed = max(pos.values()) + 1
    for line, cells in rows:
        if len(cells) < needed:
            truncated.append((line, ",".join(cells)))
            continue
        record = {f: cells[i].replace(",", "").strip() for f, i in pos.items() if f not in ("symbol", "date")}
        date = cells[pos["date"]].strip()
        record.update(symbol=canonical_symbol(cells[pos["symbol"]]) if "symbol" in pos else file_symbol,
                      date=(dates or {}).get(date, date), source_line=line)
        records.append(record)
    return ParsedFile(path, fmt, raw_frame(records, path, fmt), [], truncated)


def parse_named(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """OHLCV file with DSE's or a scraper's column names: one instrument (code from the file name) or many."""
    pos = _positions(header)
    return _parse_columns(path, "trading-code" if "symbol" in pos else "ohlcv", rows, pos)


_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9&().\-_]*")
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
_DATES = ((re.compile(r"(\d{4})(\d{2})(\d{2})"), ("ymd",)), (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"), ("ymd",)),
          (re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})"), ("dmy", "mdy")))


def _date_readings(cell: str) -> dict[str, str]:
    """ISO date of ``cell`` under each day order it is valid in (20251022, 2025-10-22, 22/10/2025 or 10/22/2025)."""
    for pattern, orders in _DATES:
        match = pattern.fullmatch(cell.strip())
        if match:
            a, b, c = (int(g) for g in match.groups())
            readings = {}
            for order in orders:
                year, month, day = {"ymd": (a, b, c), "dmy": (c, b, a), "mdy": (c, a, b)}[order]
                try:
                    readings[order] = dt.date(year, month, day).isoformat()
                except ValueError:
                    continue
            return readings
    return {}


def is_headerless(header: list[str]) -> bool:
    """The end-of-day export has no header: its first line is a code, a date and five numbers."""
    cells = [c.strip() for c in header]
    return (len(cells) >= 7 and bool(_CODE.fullmatch(cells[0])) and not _NUMBER.fullmatch(cells[0])
            and bool(_date_readings(cells[1])) and all(_NUMBER.fullmatch(c) for c in cells[2:7]))


def parse_headerless(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> ParsedFile:
    """``ticker,date,open,high,low,close,volume`` without a header; the day order is read off the data."""
    rows = [(1, header), *rows]
    readings = [_date_readings(cells[1]) for _, cells in rows if len(cells) > 1]
    orders = set.intersection(*(set(r) for r in readings if r))
    if len(orders) != 1:
        sample = next(cells[1] for _, cells in rows if len(cells) > 1)
        reason = ("is ambiguous: no day is above 12, so every date (e.g. '" + sample + "') reads as day/month "
                  "and as month/day") if orders else "mixes day-first and month-first dates"
        raise PlatformError(f"{path}: date column (2nd) {reason}", "rewrite the dates as YYYY-MM-DD")
    (order,) = orders
    dates = {cells[1].strip(): r[order] for (_, cells), r in zip(rows, readings, strict=False) if order in r}
    pos = {"symbol": 0, "date": 1, "open": 2, "high": 3, "low": 4, "close": 5, "volume": 6}
    return _parse_columns(path, "headerless", rows, pos, dates)


@dataclass(frozen=True)
class ColumnMap:
    """``--columns``: raw-layout field -> the file's own column name, for a layout no header rule recognises."""

    columns: dict[str, str]

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """``symbol=Ticker,date=Day,open=O,...``; date, open, high, low and close are required."""
        columns: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            target, sep, source = (s.strip() for s in item.partition("="))
            if not sep or not source:
                raise PlatformError(f"--columns: '{item}' is not field=column", "write e.g. date=Day,close=Last")
            if target.lower() not in ALIASES:
                raise PlatformError(f"--columns: unknown field '{target}'", f"use one of {', '.join(ALIASES)}")
            columns[target.lower()] = source
        missing = [f for f in BAR_FIELDS if f not in columns]
        if missing:
            raise PlatformError(f"--columns: no column given for {', '.join(missing)}",
                                f"map at least {', '.join(BAR_FIELDS)}")
        return cls(columns)

    def positions(self, header: list[str]) -> dict[str, int] | None:
        """Where each mapped column is in ``header`` (any case), or None when one is absent."""
        names = [norm_header(h) for h in header]
        wanted = {field_: norm_header(column) for field_, column in self.columns.items()}
        if not set(wanted.values()) <= set(names):
            return None
        return {field_: names.index(column) for field_, column in wanted.items()}


Parser = Callable[[Path, list[str], list[tuple[int, list[str]]]], ParsedFile]


def _has(*columns: str) -> Callable[[list[str]], bool]:
    return lambda header: set(columns) <= {norm_header(h) for h in header}


def _named(symbol: bool) -> Callable[[list[str]], bool]:
    return lambda header: ({*BAR_FIELDS, "symbol"} if symbol else {*BAR_FIELDS, "volume"}) <= set(_positions(header))


#: (format name, test on the first line, parser); most specific first
FORMATS: list[tuple[str, Callable[[list[str]], bool], Parser]] = [
    ("investing", _has("date", "price", "open", "high", "low", "vol.", "change %"), parse_investing),
    ("day-end", lambda h: _has("date", "high", "low", "ycp", "trade", "value (mn)", "volume")(h)
     and (_has("scrip")(h) or _has("trading code")(h)), parse_day_end),
    ("dse-eod", _has("date", "open", "high", "low", "close", "volume", "trade"), parse_eod),
    ("trading-code", _named(symbol=True), parse_named),
    ("ohlcv", _named(symbol=False), parse_named),
    ("headerless", is_headerless, parse_headerless),
]


def detect_format(path: Path, header: list[str]) -> tuple[str, Parser]:
    """The first layout in :data:`FORMATS` whose test the file's first line passes."""
    for fmt, matches, parser in FORMATS:
        if matches(header):
            return fmt, parser
    raise PlatformError(
        f"{path}: unknown file format; columns seen: {', '.join(h.strip() for h in header) or '(none)'}",
        "expected date,open,high,low,close,volume (any case; a trading_code column for many instruments), "
        "an investing.com export, DSE's day-end archive or a headerless ticker,date,open,high,low,close,volume "
        "export; otherwise name the columns with --columns")


def file_price_basis(path: Path, header: list[str], declared: PriceBasis | None) -> tuple[PriceBasis, int | None]:
    """The file's price basis, and the adjusted-close column to read the close from (None: the layout's close).

    The header's word comes first: a file whose only close is adjusted is adjusted (``declared`` raw contradicts
    it); one with a raw close beside an adjusted one is ambiguous unless ``declared`` picks. Without such a
    column the basis is ``declared``, else raw. Prices alone never decide it: a seam looks like a real move.
    """
    names = [norm_header(h) for h in header]
    adjusted = next((i for i, name in enumerate(names) if name in ADJUSTED_CLOSE), None)
    if adjusted is None:
        return declared or DEFAULT_BASIS, None
    shown = header[adjusted].strip()
    if not any(name in ALIASES["close"] and name not in ADJUSTED_CLOSE for name in names):
        if declared == "raw":
            raise PlatformError(f"{path}: price basis: its close column '{shown}' is back-adjusted, but "
                                "--price-basis raw was given",
                                "drop --price-basis raw (the file is then read as adjusted), or ingest a file of "
                                "DSE's traded prices")
        return "adjusted", None
    if declared is None:
        raise PlatformError(f"{path}: price basis is ambiguous: it has a raw close and a back-adjusted '{shown}'",
                            f"pass --price-basis raw to read the close, or --price-basis adjusted to read '{shown}' "
                            f"(open, high and low then scaled by {shown} / close)")
    return declared, adjusted if declared == "adjusted" else None


def _numbers(text: pd.Series) -> pd.Series:
    """Cells as the rules will read them (trimmed), NaN where they are not numbers."""
    return pd.to_numeric(text.fillna("").astype(str).str.strip(), errors="coerce")


def _back_adjust(rows: pd.DataFrame, records: list[tuple[int, list[str]]], column: int) -> None:
    """Close from the adjusted-close ``column``; open, high and low scaled by adjusted / raw close, as back-adjusting
    does. A row whose factor does not compute keeps the cell that spoils it, so the rules reject it for that."""
    cells = {line: row[column] for line, row in records if len(row) > column}
    adjusted_text = rows["source_line"].map(cells).fillna("").str.replace(",", "").str.strip()
    adjusted = _numbers(adjusted_text)
    close = _numbers(rows["close"])
    factor = adjusted / close.where(close > 0)
    for col in ("open", "high", "low"):
        scaled = _numbers(rows[col]) * factor
        rows[col] = scaled.astype(str).where(scaled.notna(), rows[col])
    rows["close"] = adjusted_text.where(factor.notna() | adjusted.isna(), rows["close"])


def parse_file(path: Path, text: str | None = None, columns: ColumnMap | None = None,
               price_basis: PriceBasis | None = None) -> ParsedFile:
    """Parse one raw file (its ``text`` when already read) by ``columns`` when its header has them, else by layout.

    ``price_basis`` is what the user declared (``--price-basis``) for files that do not say it themselves.
    """
    header, rows = split_records(read_text(path) if text is None else text)
    pos = columns.positions(header) if columns else None
    if pos is not None:
        basis, _ = file_price_basis(path, [columns.columns["close"]], price_basis)
        parsed = _parse_columns(path, "column-map", rows, pos)
    else:
        _, parser = detect_format(path, header)
        basis, adjusted_close = file_price_basis(path, header, price_basis)
        parsed = parser(path, header, rows)
        if adjusted_close is not None:
            _back_adjust(parsed.rows, rows, adjusted_close)
    parsed.rows["price_basis"] = basis
    return parsed
