"""DSE's latest-share-price page, parsed strictly from pages built from real DSE rows (no service)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from dse_platform.data.trading_calendar import DHAKA
from dse_platform.errors import PlatformError
from dse_platform.streams import live
from dse_platform.streams.live import backoff_delay, deadletter_value, tick_record
from dse_platform.streams.live_page import LayoutError, parse_heading, parse_latest_page, parse_number
from tests.support.livepages import HEADERS, Row, heading_text, load_rows, render_page, row_cells

ROWS = load_rows()
WED_11 = dt.datetime(2025, 10, 22, 11, 0, tzinfo=DHAKA)  # a Wednesday session, 2025-10-22
GOOD = render_page(ROWS, WED_11)


def by_symbol(symbol: str) -> Row:
    return next(r for r in ROWS if r.symbol == symbol)


# ---- pure parsing ----------------------------------------------------------------------------------

def test_fixture_rows_are_the_real_archive_rows() -> None:
    assert len(ROWS) == 632  # 654 instruments, 22 truncated upstream (see livepages)
    row = by_symbol("1JANATAMF")
    assert (row.ltp, row.volume, row.trades) == (Decimal("2.9"), 1201483, 145)


def test_parse_normal_page_returns_every_row_exactly() -> None:
    as_of, rows = parse_latest_page(GOOD)
    assert as_of == WED_11 and as_of.utcoffset() == dt.timedelta(hours=6)
    assert rows == [r.expected() for r in ROWS]


def test_parse_thousands_separators_and_dashes() -> None:
    big = max(ROWS, key=lambda r: r.trades)  # 6,184 trades, a seven-digit volume
    n = ROWS.index(big) + 1
    cells = row_cells(n, big)
    assert cells[8] == f"{big.trades:,}" and cells[10].count(",") == 2
    untraded = next(i for i, r in enumerate(ROWS, 1) if r.trades == 0 and i % 2 == 0)
    assert row_cells(untraded, ROWS[untraded - 1])[2] == "--"
    _, rows = parse_latest_page(GOOD)
    assert (rows[n - 1]["trades"], rows[n - 1]["volume"]) == (big.trades, big.volume)
    dashed = rows[untraded - 1]
    assert (dashed["ltp"], dashed["trades"], dashed["volume"], dashed["value_mn"]) == (0.0, 0, 0, 0.0)
    assert isinstance(dashed["volume"], int) and isinstance(dashed["ltp"], float)


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("1,234.5", float, 1234.5), ("1,037,500", int, 1037500), ("--", int, 0), ("--", float, 0.0),
    ("-0.3", float, -0.3), ("2.9", float, 2.9)])
def test_parse_number(text: str, kind: type, value: float) -> None:
    assert parse_number(text, kind, "cell") == value


@pytest.mark.parametrize("text", ["12.5.1", "n/a", "", "1.5"])
def test_parse_number_rejects_non_numbers(text: str) -> None:
    with pytest.raises(LayoutError, match="TRADE: expected a number"):
        parse_number(text, int, "row 1 (X) TRADE")


@pytest.mark.parametrize(("text", "expected"), [
    ("Latest Share Price On Oct 22, 2025 at 3:10 PM", dt.datetime(2025, 10, 22, 15, 10)),
    ("Latest Share Price On Oct 22, 2025 at 12:05 PM", dt.datetime(2025, 10, 22, 12, 5)),
    ("Latest Share Price On Jan 05, 2026 at 9:59 AM", dt.datetime(2026, 1, 5, 9, 59)),
    ("  Latest Share Price On\xa0 Oct 2,2025  at 10:00 am ", dt.datetime(2025, 10, 2, 10, 0)),
])
def test_parse_heading(text: str, expected: dt.datetime) -> None:
    as_of = parse_heading(text)
    assert as_of == expected.replace(tzinfo=DHAKA)
    assert as_of.isoformat().endswith("+06:00")


@pytest.mark.parametrize(("page", "message"), [
    (render_page(ROWS, WED_11, table_class="table table-bordered background-white"),
     "table: expected <table class='table table-bordered background-white shares-table fixedHeader'>, "
     "found none"),
    (render_page(ROWS, WED_11, cells={3: row_cells(3, ROWS[2])[:10]}), "row 3: expected 11 cells, found 10"),
    (render_page(ROWS, WED_11, cells={5: [*row_cells(5, ROWS[4]), "x"]}), "row 5: expected 11 cells, found 12"),
    (render_page(ROWS, WED_11, headers=[*HEADERS[:2], "LAST PRICE", *HEADERS[3:]]), "'LAST PRICE'"),
    (render_page(ROWS, WED_11, headers=[*HEADERS[:8], "VALUE (mn)", "TRADE", "VOLUME"]),
     "header: expected ['#', 'TRADING CODE'"),
    (render_page(ROWS, WED_11, heading=""), "heading: expected <h2 class='BodyHead topBodyHead'>"),
    (render_page(ROWS, WED_11, heading="Latest Share Price On 22/10/2025"), "found 'Latest Share Price On 22/10"),
    (render_page(ROWS, WED_11, heading="Latest Share Price On Foo 22, 2025 at 3:10 PM"),
     "expected a valid date and time"),
    (render_page(ROWS, WED_11, cells={2: [*row_cells(2, ROWS[1])[:10], "lots"]}),
     "row 2 (1STPRIMFMF) VOLUME: expected a number, found 'lots'"),
    (render_page([], WED_11), "expected instrument rows, found only the header"),
])
def test_layout_changes_raise_layout_error(page: str, message: str) -> None:
    with pytest.raises(LayoutError) as info:
        parse_latest_page(page)
    assert message in str(info.value)


def test_layout_error_is_a_platform_error() -> None:
    assert issubclass(LayoutError, PlatformError)


def test_backoff_doubles_from_5s_and_caps_at_300s() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]


def test_tick_record_carries_dhaka_date_and_as_of() -> None:
    as_of = dt.datetime(2025, 10, 22, 8, 10, tzinfo=dt.UTC)  # 14:10 in Dhaka
    record = tick_record(ROWS[0].expected(), as_of, 123)
    assert record == {**ROWS[0].expected(), "date": "2025-10-22", "as_of": "2025-10-22T14:10:00+06:00",
                      "source": "live", "produced_at": 123}


def test_deadletter_of_a_huge_page_fits_a_kafka_message() -> None:
    raw = ("<html>" + "\u00e9" * 2_000_000).encode("utf-8")  # 4 MB, every byte non-ASCII after '<html>'
    value = deadletter_value(raw, "header: expected X, found Y")
    letter = json.loads(value)
    assert len(value) <= live.MAX_DEADLETTER_VALUE
    assert raw.startswith(letter["raw"].encode("latin-1")) and len(letter["raw"]) > 100_000
    assert letter["reason"].startswith("header: expected X, found Y (raw page truncated from 4000006 bytes)")
    assert letter["source"] == "live" and letter["topic"] is None


def test_heading_text_round_trips() -> None:
    moment = dt.datetime(2025, 10, 22, 13, 7, tzinfo=DHAKA)
    assert parse_heading(heading_text(moment)) == moment


def test_a_table_nested_in_a_cell_adds_no_cells_and_no_text() -> None:
    nested = '<table class="table"><tr><td>9.9</td><td>x</td></tr><tr><td>1</td></tr></table>'
    cells = row_cells(4, ROWS[3])
    page = render_page(ROWS, WED_11, cells={4: [*cells[:2], cells[2] + nested, *cells[3:]]})
    assert page.count("<table") == GOOD.count("<table") + 1
    assert parse_latest_page(page) == parse_latest_page(GOOD)


def test_a_nested_table_does_not_hide_a_missing_cell() -> None:
    nested = "<table><tr><td>1</td><td>2</td></tr></table>"
    cells = row_cells(6, ROWS[5])
    page = render_page(ROWS, WED_11, cells={6: [*cells[:9], cells[9] + nested]})
    with pytest.raises(LayoutError, match="row 6: expected 11 cells, found 10"):
        parse_latest_page(page)


def test_rows_without_thead_or_tbody_parse_the_same() -> None:
    bare = GOOD
    for tag in ("<thead>", "</thead>", "<tbody>", "</tbody>"):
        bare = bare.replace(tag, "")
    assert "<tbody>" not in bare and parse_latest_page(bare) == parse_latest_page(GOOD)
