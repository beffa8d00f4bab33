"""DSE's latest-share-price page, parsed strictly: a changed layout is an error, not data."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import Any

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

    def __init__(self, problem: str) -> None:
        super().__init__(problem, "compare the page with live.parse_latest_page and update the parser")


class _PageParser(HTMLParser):
    """Collects the heading text and the rows (cell texts) of the first shares table.

    Only cells of the target table itself count: a table nested inside a cell is
    kept out so that its cells cannot shift the columns.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self.rows: list[list[str]] = []
        self.found_table = False
        self._heading: list[str] | None = None
        self._table_depth = 0  # depth of open <table>s
        self._target_depth: int | None = None  # depth of the shares table while it is open
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "h2" and HEADING_CLASSES.issubset(classes):
            self._heading = []
        elif tag == "table":
            self._table_depth += 1
            if not self.found_table and TABLE_CLASSES.issubset(classes):
                self.found_table = True
                self._target_depth = self._table_depth
        elif self._in_target():
            if tag == "tr":
                self._close_row()
                self._row = []
            elif tag in ("td", "th") and self._row is not None:
                self._close_cell()
                self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None
        elif tag == "table":
            if self._in_target():
                self._close_row()
                self._target_depth = None
            self._table_depth = max(self._table_depth - 1, 0)
        elif self._in_target():
            if tag in ("td", "th"):
                self._close_cell()
            elif tag in ("tr", "thead", "tbody", "tfoot"):
                self._close_row()

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)
        if self._cell is not None and self._in_target():
            self._cell.append(data)

    def close(self) -> None:
        super().close()
        self._close_row()

    def _in_target(self) -> bool:
        return self._target_depth is not None and self._table_depth == self._target_depth

    def _close_cell(self) -> None:
        if self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._row:
            self.rows.append(self._row)
        self._row = None


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


def parse_number(text: str, kind: type, where: str) -> float | int:
    """A DSE number: thousands separators allowed, '--' means 0; anything else is a layout change."""
    cleaned = text.replace(",", "").strip()
    if cleaned == "--":
        return kind(0)
    try:
        return kind(cleaned)
    except ValueError:
        raise LayoutError(f"{where}: expected a number, found {text!r}") from None


def parse_latest_page(html: str) -> tuple[dt.datetime, list[dict[str, Any]]]:
    """The page's as-of moment and one dict per instrument (symbol plus the numeric fields).

    Raises LayoutError naming what was expected and what was found whenever the
    table, its header, a row's cell count, a number or the heading is not as expected.
    """
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    heading = next((h for h in parser.headings if h), None)
    if heading is None:
        raise LayoutError("heading: expected <h2 class='BodyHead topBodyHead'> with the as-of time, "
                          "found none")
    as_of = parse_heading(heading)
    if not parser.found_table:
        raise LayoutError(f"table: expected <table class='{TABLE_CLASS}'>, found none")
    if not parser.rows:
        raise LayoutError("table: expected a header row and instrument rows, found an empty table")
    header, *body = parser.rows
    if [h.upper() for h in header] != [h.upper() for h in HEADERS]:
        raise LayoutError(f"header: expected {list(HEADERS)}, found {header}")
    if not body:
        raise LayoutError("table: expected instrument rows, found only the header")
    records = []
    for n, cells in enumerate(body, start=1):
        if len(cells) != len(HEADERS):
            raise LayoutError(f"row {n}: expected {len(HEADERS)} cells, found {len(cells)}: {cells}")
        symbol = cells[1]
        if not symbol:
            raise LayoutError(f"row {n}: expected a trading code, found an empty cell")
        record: dict[str, Any] = {"symbol": symbol}
        for (field, name, kind), text in zip(NUMERIC_CELLS, cells[2:], strict=True):
            record[field] = parse_number(text, kind, f"row {n} ({symbol}) {name}")
        records.append(record)
    return as_of, records
