"""Fixture pages for the live connector, built from real DSE rows in the latest-share-price layout.

No saved copy of DSE's live page exists publicly, so tests render the real rows
of ``data/day-end-archive-2025-10-22.csv`` the way the page shows them (see
data/README.md): numbers with thousands separators and, in every other row,
"--" for zeros. 22 rows of that file lost their VALUE/VOLUME cells upstream
(unquoted "4,142"-style numbers shifted the columns); they are left out rather
than invented.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import pandas as pd

from dse_platform.config import PROJECT_DIR

ARCHIVE_CSV = PROJECT_DIR / "data" / "day-end-archive-2025-10-22.csv"
TABLE_CLASS = "table table-bordered background-white shares-table fixedHeader"
HEADERS = ["#", "TRADING CODE", "LTP*", "HIGH", "LOW", "CLOSEP*", "YCP*", "CHANGE", "TRADE", "VALUE (mn)",
           "VOLUME"]


@dataclass(frozen=True)
class Row:
    """One instrument as the live page shows it (exact decimals, as in the CSV)."""

    symbol: str
    ltp: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    ycp: Decimal
    trades: int
    value_mn: Decimal
    volume: int

    @property
    def change(self) -> Decimal:
        return self.ltp - self.ycp

    def expected(self) -> dict:
        """The numeric fields the parser should return for this row."""
        return {"symbol": self.symbol, "ltp": float(self.ltp), "high": float(self.high),
                "low": float(self.low), "close": float(self.close), "ycp": float(self.ycp),
                "change": float(self.change), "trades": self.trades, "value_mn": float(self.value_mn),
                "volume": self.volume}

    def with_(self, **changes) -> Row:
        return replace(self, **changes)


def _dec(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def load_rows(path: Path = ARCHIVE_CSV) -> list[Row]:
    """The complete rows of the day-end archive CSV (rows with missing cells skipped)."""
    rows = []
    with path.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            if None in rec or any(v in (None, "") for v in rec.values()):
                continue
            rows.append(Row(symbol=rec["Scrip"], ltp=_dec(rec["LTP*"]), high=_dec(rec["High"]),
                            low=_dec(rec["Low"]), close=_dec(rec["Close"]), ycp=_dec(rec["YCP"]),
                            trades=int(_dec(rec["Trade"])), value_mn=_dec(rec["VALUE (mn)"]),
                            volume=int(_dec(rec["Volume"]))))
    return rows


def fmt(value: Decimal | int, dash_zero: bool) -> str:
    """A number as DSE prints it: thousands separators, '--' for zero where the page does that."""
    if value == 0 and dash_zero:
        return "--"
    return format(value, ",")


def heading_text(as_of: dt.datetime) -> str:
    """'Latest Share Price On Oct 22, 2025 at 3:10 PM' for an Asia/Dhaka moment."""
    hour = as_of.hour % 12 or 12
    return (f"Latest Share Price On {as_of:%b} {as_of.day:02d}, {as_of.year} "
            f"at {hour}:{as_of:%M} {as_of:%p}")


def row_cells(n: int, row: Row) -> list[str]:
    dash = n % 2 == 0
    code = f'<a href="displayCompany.php?name={row.symbol}" class="ab1">{row.symbol}</a>'
    numbers = [row.ltp, row.high, row.low, row.close, row.ycp, row.change, row.trades, row.value_mn,
               row.volume]
    return [str(n), code, *(fmt(v, dash) for v in numbers)]


def render_page(rows: list[Row], as_of: dt.datetime, *, headers: list[str] | None = None,
                table_class: str = TABLE_CLASS, heading: str | None = None,
                cells: dict[int, list[str]] | None = None) -> str:
    """The latest-share-price page; keyword arguments break its layout on purpose.

    ``cells`` replaces the cells of the given (1-based) rows, e.g. to drop one.
    """
    heading = heading_text(as_of) if heading is None else heading
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (HEADERS if headers is None else headers))
    body = []
    for n, row in enumerate(rows, start=1):
        row_html = (cells or {}).get(n) or row_cells(n, row)
        body.append("<tr>" + "".join(f'<td width="9%">{c}</td>' for c in row_html) + "</tr>")
    heading_html = f'<h2 class="BodyHead topBodyHead">{heading}</h2>' if heading else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Latest Share Price | Dhaka Stock Exchange</title></head>
<body><div class="container">
<div class="row"><table class="table"><tr><td>DSEX</td><td>5,123.45</td></tr></table></div>
{heading_html}
<div class="table-responsive inner-scroll">
<table class="{table_class}">
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table></div>
<p>* Last Traded Price, Closing Price, Yesterday's Closing Price</p>
</div></body></html>"""


# ---- the day-end archive page (day_end_archive.php), the same rows with their date and open ---------

DAY_END_HEADERS = ["#", "DATE", "TRADING CODE", "LTP*", "HIGH", "LOW", "OPENP*", "CLOSEP*", "YCP", "TRADE",
                   "VALUE (mn)", "VOLUME"]


@dataclass(frozen=True)
class DayEndRow(Row):
    """One instrument as the day-end archive shows it: the live page's row plus its date and open."""

    date: dt.date
    open: Decimal

    @property
    def traded(self) -> bool:
        return any((self.ltp, self.open, self.high, self.low))

    def expected(self) -> dict:
        """The fields the day-end parser should return for this row."""
        return {"symbol": self.symbol, "date": self.date, "ltp": float(self.ltp), "high": float(self.high),
                "low": float(self.low), "open": float(self.open), "close": float(self.close),
                "ycp": float(self.ycp), "trades": self.trades, "value_mn": float(self.value_mn),
                "volume": self.volume}


def load_day_end_rows(path: Path = ARCHIVE_CSV) -> list[DayEndRow]:
    """The same complete rows as :func:`load_rows`, with the archive's date and open price."""
    with path.open(newline="") as fh:
        extra = {rec["Scrip"]: (dt.date.fromisoformat(rec["DATE"]), _dec(rec["Open"])) for rec in csv.DictReader(fh)}
    return [DayEndRow(**vars(row), date=extra[row.symbol][0], open=extra[row.symbol][1]) for row in load_rows(path)]


def day_end_cells(n: int, row: DayEndRow) -> list[str]:
    dash = n % 2 == 0
    code = f'<a href="displayCompany.php?name={row.symbol}" class="ab1">{row.symbol}</a>'
    numbers = [row.ltp, row.high, row.low, row.open, row.close, row.ycp, row.trades, row.value_mn, row.volume]
    return [str(n), row.date.isoformat(), code, *(fmt(v, dash) for v in numbers)]


def render_day_end_page(rows: list[DayEndRow], *, headers: list[str] | None = None,
                        table_class: str = TABLE_CLASS, cells: dict[int, list[str]] | None = None) -> str:
    """The day-end archive page for ``rows``; keyword arguments break its layout on purpose (as render_page)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (DAY_END_HEADERS if headers is None else headers))
    body = []
    for n, row in enumerate(rows, start=1):
        row_html = (cells or {}).get(n) or day_end_cells(n, row)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row_html) + "</tr>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Day End Archive | Dhaka Stock Exchange</title></head>
<body><div class="container">
<h2 class="BodyHead topBodyHead">Day End Summary</h2>
<div class="table-responsive inner-scroll">
<table class="{table_class}">
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table></div>
<p>* Last Traded Price, Opening Price, Closing Price</p>
</div></body></html>"""


def _decimal(value: float) -> Decimal:
    """A stored float as the page prints it (an empty cell of the store shows as 0)."""
    return Decimal(0) if pd.isna(value) else Decimal(repr(float(value)))


def day_end_rows_from_bars(day_bars: pd.DataFrame, previous_close: dict[str, float]) -> list[DayEndRow]:
    """A session's real bars (a store frame of one date) as the day-end archive shows them."""
    rows = []
    for bar in day_bars.itertuples():
        close = _decimal(bar.close)
        rows.append(DayEndRow(symbol=bar.symbol, ltp=close, high=_decimal(bar.high), low=_decimal(bar.low),
                              close=close, ycp=_decimal(previous_close.get(bar.symbol, bar.close)),
                              trades=int(_decimal(bar.trades)), value_mn=_decimal(bar.value_mn),
                              volume=int(_decimal(bar.volume)), date=bar.date, open=_decimal(bar.open)))
    return rows
