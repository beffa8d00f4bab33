"""DSE's latest-share-price page, parsed strictly: a changed layout is an error, not data."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from bs4 import BeautifulSoup, Tag

from dse_platform.data.trading_calendar import DHAKA
from dse_platform.errors import PlatformError

TABLE_CLASS = "table table-bordered background-white shares-table fixedHeader"


TABLE_CLASSES = frozenset(TABLE_CLASS.split())


HEADERS = ("#", "TRADING CODE", "LTP*", "HIGH", "LOW", "CLOSEP*", "YCP*", "CHANGE", "TRADE", "VALUE (mn)",
           "VOLUME")


HEADING_CLASSES = frozenset({"BodyHead", "topBodyHead"})


HEADING_RE = re.compile(
    r"Latest Share Price On\s+(?P<date>[A-Za-z]{3,9}\s+\d{1,2},\s*\d{4})\s+at\s+"
    r"(?P<time>\d{1,2}:\d{2}\s*[AaPp][Mm])")


# (record field, header, type) for cells 2..10; cell 0 is the row number, cell 1 the trading code.
NUMERIC_CELLS: tuple[tuple[str, str, type], ...] = (
    ("ltp", "LTP*", float), ("high", "HIGH", float), ("low", "LOW", float), ("close", "CLOSEP*", float),
    ("ycp", "YCP*", float), ("change", "CHANGE", float), ("trades", "TRADE", int),
    ("value_mn", "VALUE (mn)", float), ("volume", "VOLUME", int))


VALUE_FIELDS = tuple(field for field, _, _ in NUMERIC_CELLS)


class LayoutError(PlatformError):
    """DSE's page no longer looks the way the parser expects; its values cannot be trusted."""

    def __init__(self, problem: str, parser: str = "live_page.parse_latest_page") -> None:
        super().__init__(problem, f"compare the page with {parser} and update the parser")


def _text(tag: Tag) -> str:
    """The tag's text with runs of whitespace (non-breaking spaces included) collapsed, as a browser shows it."""
    return " ".join(tag.get_text().split())


def _has_classes(tag: Tag, name: str, classes: frozenset[str]) -> bool:
    return tag.name == name and classes.issubset(tag.get("class") or ())


def _own_rows(table: Tag) -> list[list[str]]:
    """Cell texts of the table's own rows (directly or through thead/tbody/tfoot), in page order.

    A table nested inside a cell is removed first: its rows and cells are not the
    table's, and its text must not run into the cell that holds it.
    """
    while (nested := table.find("table")) is not None:
        nested.decompose()
    rows = []
    for child in table.find_all(["tr", "thead", "tbody", "tfoot"], recursive=False):
        for row in [child] if child.name == "tr" else child.find_all("tr", recursive=False):
            cells = [_text(cell) for cell in row.find_all(["td", "th"], recursive=False)]
            if cells:
                rows.append(cells)
    return rows


def shares_table_rows(soup: BeautifulSoup, headers: tuple[str, ...],
                      parser: str = "live_page.parse_latest_page") -> list[list[str]]:
    """The cell texts of the shares table's instrument rows, after checking its header and every row's width.

    DSE's latest-share-price and day-end archive pages share this table; ``parser`` names the
    caller in the LayoutError raised when the table, its header or a row's cell count is not as expected.
    """
    table = soup.find(lambda t: _has_classes(t, "table", TABLE_CLASSES))
    if table is None:
        raise LayoutError(f"table: expected <table class='{TABLE_CLASS}'>, found none", parser)
    rows = _own_rows(table)
    if not rows:
        raise LayoutError("table: expected a header row and instrument rows, found an empty table", parser)
    header, *body = rows
    if [h.upper() for h in header] != [h.upper() for h in headers]:
        raise LayoutError(f"header: expected {list(headers)}, found {header}", parser)
    if not body:
        raise LayoutError("table: expected instrument rows, found only the header", parser)
    for n, cells in enumerate(body, start=1):
        if len(cells) != len(headers):
            raise LayoutError(f"row {n}: expected {len(headers)} cells, found {len(cells)}: {cells}", parser)
    return body


def parse_heading(text: str) -> dt.datetime:
    """'Latest Share Price On Oct 22, 2025 at 3:10 PM' -> that moment in Asia/Dhaka (tz-aware)."""
    match = HEADING_RE.search(" ".join(text.split()))
    if not match:
        raise LayoutError(f"heading: expected 'Latest Share Price On <Mon DD, YYYY> at <H:MM PM>', "
                          f"found {text!r}")
    date_text = re.sub(r",\s*", ", ", match["date"])
    time_text = match["time"].replace(" ", "").upper()
    for fmt in ("%b %d, %Y %I:%M%p", "%B %d, %Y %I:%M%p"):
        try:
            naive = dt.datetime.strptime(f"{date_text} {time_text}", fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=DHAKA)
    raise LayoutError(f"heading: expected a valid date and time, found {match.group(0)!r}")


def parse_number(text: str, kind: type, where: str, parser: str = "live_page.parse_latest_page") -> float | int:
    """A DSE number: thousands separators allowed, '--' means 0; anything else is a layout change."""
    cleaned = text.replace(",", "").strip()
    if cleaned == "--":
        return kind(0)
    try:
        return kind(cleaned)
    except ValueError:
        raise LayoutError(f"{where}: expected a number, found {text!r}", parser) from None


def parse_latest_page(html: str) -> tuple[dt.datetime, list[dict[str, Any]]]:
    """The page's as-of moment and one dict per instrument (symbol plus the numeric fields).

    Raises LayoutError naming what was expected and what was found whenever the
    table, its header, a row's cell count, a number or the heading is not as expected.
    """
    soup = BeautifulSoup(html, "lxml")
    headings = (_text(h) for h in soup.find_all(lambda t: _has_classes(t, "h2", HEADING_CLASSES)))
    heading = next((h for h in headings if h), None)
    if heading is None:
        raise LayoutError("heading: expected <h2 class='BodyHead topBodyHead'> with the as-of time, "
                          "found none")
    as_of = parse_heading(heading)
    records = []
    for n, cells in enumerate(shares_table_rows(soup, HEADERS), start=1):
        symbol = cells[1]
        if not symbol:
            raise LayoutError(f"row {n}: expected a trading code, found an empty cell")
        record: dict[str, Any] = {"symbol": symbol}
        for (field, name, kind), text in zip(NUMERIC_CELLS, cells[2:], strict=True):
            record[field] = parse_number(text, kind, f"row {n} ({symbol}) {name}")
        records.append(record)
    return as_of, records
