"""DSE's day-end archive page, parsed as strictly as the latest-share-price page: it holds the official bars.

The page shares the latest-share-price page's table (see :mod:`live_page`) with a DATE and an
OPENP* column. Asked for one day, it lists every instrument with that day's date; an instrument
that did not trade shows 0 for its LTP, open, high and low and carries a close (its previous
one, or a treasury bond's revaluation), which is no bar of that day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bs4 import BeautifulSoup

from dse_platform.streams.live_page import LayoutError, parse_number, shares_table_rows

PARSER = "day_end_page.parse_day_end_page"


HEADERS = ("#", "DATE", "TRADING CODE", "LTP*", "HIGH", "LOW", "OPENP*", "CLOSEP*", "YCP", "TRADE", "VALUE (mn)",
           "VOLUME")


# (record field, header, type) for cells 3..11; cell 0 is the row number, 1 the date, 2 the trading code.
NUMERIC_CELLS: tuple[tuple[str, str, type], ...] = (
    ("ltp", "LTP*", float), ("high", "HIGH", float), ("low", "LOW", float), ("open", "OPENP*", float),
    ("close", "CLOSEP*", float), ("ycp", "YCP", float), ("trades", "TRADE", int),
    ("value_mn", "VALUE (mn)", float), ("volume", "VOLUME", int))


VALUE_FIELDS = tuple(field for field, _, _ in NUMERIC_CELLS)


#: all zero on the page when the instrument did not trade that day
UNTRADED_ZEROS = ("ltp", "open", "high", "low")


@dataclass(frozen=True)
class DayEndPage:
    """One day of the archive: its date, the instruments that traded (page order) and the codes that did not."""

    date: dt.date
    rows: tuple[dict[str, Any], ...]
    untraded: tuple[str, ...]


def traded(row: dict[str, Any]) -> bool:
    """False when the page shows no trade: LTP, open, high and low all 0 ('--')."""
    return any(row[field] for field in UNTRADED_ZEROS)


def _date(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise LayoutError(f"{where}: expected a YYYY-MM-DD date, found {text!r}", PARSER) from None


def parse_day_end_page(html: str) -> DayEndPage:
    """The page's date, one dict per traded instrument (symbol, date and the numeric fields), the untraded codes.

    Raises LayoutError naming what was expected and what was found whenever the table, its
    header, a row's cell count, a date, a number or a trading code is not as expected, or when
    the rows carry more than one date (a one-day request never shows several).
    """
    body = shares_table_rows(BeautifulSoup(html, "lxml"), HEADERS, PARSER)
    rows, untraded, dates = [], [], set()
    for n, cells in enumerate(body, start=1):
        symbol = cells[2]
        if not symbol:
            raise LayoutError(f"row {n}: expected a trading code, found an empty cell", PARSER)
        record: dict[str, Any] = {"symbol": symbol, "date": _date(cells[1], f"row {n} ({symbol}) DATE")}
        for (field, name, kind), text in zip(NUMERIC_CELLS, cells[3:], strict=True):
            record[field] = parse_number(text, kind, f"row {n} ({symbol}) {name}", PARSER)
        dates.add(record["date"])
        if traded(record):
            rows.append(record)
        else:
            untraded.append(symbol)
    if len(dates) != 1:
        raise LayoutError(f"DATE: expected one date on a one-day page, found {sorted(map(str, dates))}", PARSER)
    return DayEndPage(dates.pop(), tuple(rows), tuple(untraded))
