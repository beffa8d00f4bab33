"""DSE's day-end archive page parsed strictly, and the official bars made of it (pages built from real rows)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import httpx
import pytest

from dse_platform.config import Settings
from dse_platform.contracts.records import BarRecord
from dse_platform.errors import PlatformError
from dse_platform.streams import end_of_day
from dse_platform.streams.day_end_page import parse_day_end_page
from dse_platform.streams.end_of_day import EodResult, bar_record, fetch_page, page_bars, page_url
from dse_platform.streams.live_page import LayoutError
from tests.support.livepages import DAY_END_HEADERS, DayEndRow, day_end_cells, load_day_end_rows, render_day_end_page

ROWS = load_day_end_rows()
DAY = dt.date(2025, 10, 22)
GOOD = render_day_end_page(ROWS)
TRADED = [r for r in ROWS if r.traded]


def by_symbol(symbol: str) -> DayEndRow:
    return next(r for r in ROWS if r.symbol == symbol)


def test_fixture_rows_are_the_real_archive_rows() -> None:
    assert (len(ROWS), len(TRADED)) == (632, 390)  # 654 instruments, 22 truncated upstream (see livepages)
    row = by_symbol("1STPRIMFMF")
    assert (row.date, str(row.open), str(row.close), row.volume) == (DAY, "19.6", "19.9", 354575)


def test_real_rows_round_trip_exactly() -> None:
    page = parse_day_end_page(GOOD)
    assert page.date == DAY
    assert list(page.rows) == [r.expected() for r in TRADED]
    assert page.untraded == tuple(r.symbol for r in ROWS if not r.traded)


def test_untraded_rows_are_not_bars() -> None:
    """Zero LTP/open/high/low: skipped whether the close is yesterday's or (treasury bonds) revalued."""
    page = parse_day_end_page(GOOD)
    carried, revalued = by_symbol("ATCSLGF"), by_symbol("TB10Y0126")
    assert carried.close == carried.ycp and revalued.close != revalued.ycp
    assert {"ATCSLGF", "TB10Y0126"} <= set(page.untraded)
    assert not {"ATCSLGF", "TB10Y0126"} & {r["symbol"] for r in page.rows}


def test_thousands_separators_and_dashes() -> None:
    big = max(ROWS, key=lambda r: r.trades)
    n = ROWS.index(big) + 1
    cells = day_end_cells(n, big)
    assert cells[9] == f"{big.trades:,}" and "," in cells[9] and cells[11].count(",") >= 1
    dashed = next(i for i, r in enumerate(ROWS, 1) if not r.traded and i % 2 == 0)
    assert day_end_cells(dashed, ROWS[dashed - 1])[3:7] == ["--"] * 4
    page = parse_day_end_page(GOOD)
    parsed = next(r for r in page.rows if r["symbol"] == big.symbol)
    assert (parsed["trades"], parsed["volume"]) == (big.trades, big.volume)
    assert isinstance(parsed["volume"], int) and isinstance(parsed["open"], float)
    assert ROWS[dashed - 1].symbol in page.untraded


def _broken_cells(row: int, index: int, text: str) -> dict[int, list[str]]:
    cells = day_end_cells(row, ROWS[row - 1])
    cells[index] = text
    return {row: cells}


@pytest.mark.parametrize(("page", "names"), [
    (render_day_end_page(ROWS, table_class="table table-striped"), "table: expected <table class="),
    (render_day_end_page(ROWS, headers=[h.replace("OPENP*", "OPEN*") for h in DAY_END_HEADERS]), "OPEN*"),
    (render_day_end_page(ROWS, headers=DAY_END_HEADERS[:-1]), "header: expected"),
    (render_day_end_page(ROWS, cells={3: day_end_cells(3, ROWS[2])[:-1]}), "row 3: expected 12 cells, found 11"),
    (render_day_end_page(ROWS, cells=_broken_cells(5, 7, "n/a")), "CLOSEP*: expected a number, found 'n/a'"),
    (render_day_end_page(ROWS, cells=_broken_cells(2, 1, "22/10/2025")), "DATE: expected a YYYY-MM-DD date"),
    (render_day_end_page(ROWS, cells=_broken_cells(4, 2, "")), "row 4: expected a trading code"),
    (render_day_end_page(ROWS, cells=_broken_cells(6, 1, "2025-10-21")), "expected one date"),
    (render_day_end_page([]), "found only the header"),
], ids=["table-class", "renamed-column", "dropped-column", "short-row", "bad-number", "date-format",
        "empty-code", "two-dates", "no-rows"])
def test_layout_changes_raise_naming_what_changed(page: str, names: str) -> None:
    with pytest.raises(LayoutError) as caught:
        parse_day_end_page(page)
    assert names in caught.value.problem
    assert "day_end_page.parse_day_end_page" in str(caught.value)


# ---- the official bars made of the page (no broker: publishing is an integration test) -----------------

def test_page_url_is_dses_one_day_all_instrument_query() -> None:
    url = page_url(Settings(_env_file=None), DAY)
    assert url == ("https://www.dsebd.org/day_end_archive.php?startDate=2025-10-22&endDate=2025-10-22"
                   "&inst=All%20Instrument&archive=data")


def test_bar_record_is_the_official_bar_and_the_same_on_every_run() -> None:
    row = parse_day_end_page(GOOD).rows[0]
    bar = bar_record(row, DAY)
    expected = by_symbol(row["symbol"])
    assert isinstance(bar, BarRecord) and bar.source == "eod"
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (
        float(expected.open), float(expected.high), float(expected.low), float(expected.close),
        float(expected.volume), expected.trades)
    assert bar.produced_at == int(dt.datetime(2025, 10, 22, 8, 30, tzinfo=dt.UTC).timestamp() * 1000)  # 14:30 Dhaka
    assert bar_record(row, DAY).to_bytes() == bar.to_bytes()
    assert json.loads(bar.to_bytes())["source"] == "eod"


def test_codes_that_are_no_trading_code_are_skipped_and_aliases_canonical() -> None:
    page = parse_day_end_page(GOOD)
    rows = ({**page.rows[0], "symbol": "bad code"}, {**page.rows[1], "symbol": "DSEX"}, *page.rows[2:])
    bars, unknown = page_bars(replace(page, rows=rows))
    assert unknown == ["bad code"]
    assert [b.symbol for b in bars] == ["00DSEX", *(r["symbol"] for r in page.rows[2:])]


def test_result_says_when_the_page_shows_another_session() -> None:
    closed = EodResult(dt.date(2025, 10, 24), DAY)
    assert not closed.session and "nothing published" in closed.summary()
    assert EodResult(DAY, DAY, 390, 242).session


def test_a_missing_page_fails_at_once_and_names_the_setting() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404, text="Not Found")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(PlatformError) as caught:
        fetch_page(client, "https://dse.test/day_end_archive.php")
    assert len(calls) == 1 and "HTTP 404" in str(caught.value) and "DSE_EOD_URL" in str(caught.value)


def test_fetch_gives_up_after_the_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(end_of_day, "FETCH_ATTEMPTS", 2)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(PlatformError) as caught:
        fetch_page(client, "https://dse.test/day_end_archive.php")
    assert len(calls) == 2 and "failed 2 times" in str(caught.value) and "ReadTimeout" in str(caught.value)

