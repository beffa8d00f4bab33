"""``dse eod``: DSE's official end-of-day bars -> the bars topic, so a live day becomes final bars.

The live connector streams ticks, and a tick is never a final bar: without the official bar of
a day the stream cannot resolve the outcome of the day before. After the close, DSE's day-end
archive lists every instrument's official open/high/low/close; each one that traded is published
as a `BarRecord` (source ``eod``). A record's ``produced_at`` is the session's close, not the wall
clock, so running a day twice re-sends byte-identical bars, which the stream recognises as such.
Asked for a day without a session, DSE shows the last session instead: nothing is published then.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextlib import nullcontext
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_attempt, wait_exponential

from dse_platform.config import Settings
from dse_platform.contracts.records import BarRecord
from dse_platform.data.instruments import canonical_symbol
from dse_platform.data.rules import SYMBOL_PATTERN
from dse_platform.data.trading_calendar import DHAKA, SESSION_CLOSE
from dse_platform.errors import PlatformError
from dse_platform.streams import kafka_io
from dse_platform.streams.day_end_page import DayEndPage, parse_day_end_page

log = logging.getLogger(__name__)


USER_AGENT = "dse-platform-eod/1.0 (one request per session, after the close)"


#: fetches of the page before giving up (waits 1, 2, 4, 8 s between them); the DAG task retries on top
FETCH_ATTEMPTS = 5


SYMBOL_RE = re.compile(SYMBOL_PATTERN)


class _Transient(Exception):
    """DSE answered with a status worth asking again for (5xx, 429)."""


@dataclass(frozen=True)
class EodResult:
    """What one run published for ``day``; ``page_date`` is the session the page showed."""

    day: dt.date
    page_date: dt.date
    published: int = 0
    untraded: int = 0
    unknown: int = 0  # codes that are no DSE trading code: the stream would dead-letter them (bad_symbol)

    @property
    def session(self) -> bool:
        return self.page_date == self.day

    def summary(self) -> str:
        if not self.session:
            return (f"eod: DSE shows the session of {self.page_date} when asked for {self.day}: no session that day, "
                    "nothing published")
        return (f"eod {self.day}: {self.published} official bars published, {self.untraded} instruments did not "
                f"trade, {self.unknown} unknown codes skipped")


def page_url(settings: Settings, day: dt.date) -> str:
    """The archive's one-day, all-instrument URL, spelled as DSE's own links spell it (%20, not +)."""
    query = urlencode({"startDate": day.isoformat(), "endDate": day.isoformat(), "inst": "All Instrument",
                       "archive": "data"}, quote_via=quote)
    return f"{settings.eod_url}?{query}"


def official_at_ms(day: dt.date) -> int:
    """The session's close in epoch ms: when the official bar exists, the same on every run."""
    return int(dt.datetime.combine(day, SESSION_CLOSE, tzinfo=DHAKA).timestamp() * 1000)


def bar_record(row: dict, day: dt.date) -> BarRecord:
    """One traded instrument's official bar of ``day``."""
    return BarRecord(symbol=canonical_symbol(row["symbol"]), date=day, open=row["open"], high=row["high"],
                     low=row["low"], close=row["close"], volume=float(row["volume"]), trades=row["trades"],
                     value_mn=row["value_mn"], source="eod", produced_at=official_at_ms(day))


def _get(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url)
    if response.status_code >= 500 or response.status_code == 429:
        raise _Transient(f"DSE answered HTTP {response.status_code} for {url}")
    return response


def fetch_page(client: httpx.Client, url: str) -> str:
    """The page's HTML; timeouts, network errors, 5xx and 429 are retried, any other error status is not."""
    retrying = Retrying(stop=stop_after_attempt(FETCH_ATTEMPTS), wait=wait_exponential(multiplier=1, max=30),
                        retry=retry_if_exception_type((_Transient, httpx.TimeoutException, httpx.NetworkError)),
                        before_sleep=before_sleep_log(log, logging.WARNING), reraise=True)
    try:
        response = retrying(_get, client, url)
    except (_Transient, httpx.TimeoutException, httpx.NetworkError) as exc:
        raise PlatformError(f"fetching {url} failed {FETCH_ATTEMPTS} times, last: {type(exc).__name__}: {exc}",
                            "DSE may be down: run `dse eod --date D` again later (the DAG task retries)") from exc
    if response.status_code >= 400:
        raise PlatformError(f"DSE answered HTTP {response.status_code} for {url} (the page may have moved)",
                            "open the URL in a browser and set DSE_EOD_URL to the day-end archive page")
    return response.text


def publish_day(settings: Settings, day: dt.date, client: httpx.Client | None = None) -> EodResult:
    """Publish ``day``'s official bars to the bars topic with no loss; idempotent (same bars on a re-run).

    ``client`` is for tests (a mock transport); by default a real client with the live timeout is used.
    Raises LayoutError when the page's layout changed, PlatformError when DSE or Kafka fail.
    """
    url = page_url(settings, day)
    http = nullcontext(client) if client is not None else httpx.Client(
        timeout=settings.live_http_timeout_s, headers={"User-Agent": USER_AGENT}, follow_redirects=True)
    with http as session:
        page = parse_day_end_page(fetch_page(session, url))
    if page.date != day:
        result = EodResult(day, page.date)
        log.warning(result.summary())
        return result
    return _publish(settings, page)


def page_bars(page: DayEndPage) -> tuple[list[BarRecord], list[str]]:
    """The page's official bars, and the codes skipped because they are no DSE trading code."""
    bars, unknown = [], []
    for row in page.rows:
        if SYMBOL_RE.match(canonical_symbol(row["symbol"])):
            bars.append(bar_record(row, page.date))
        else:
            unknown.append(row["symbol"])
    return bars, unknown


def _publish(settings: Settings, page: DayEndPage) -> EodResult:
    bars, unknown = page_bars(page)
    if unknown:
        log.warning("eod %s: skipped %d codes that are no DSE trading code: %s", page.date, len(unknown),
                    ", ".join(unknown))
    kafka_io.ensure_topics(settings, [settings.bars_topic])
    prod = kafka_io.producer(settings, client_id="dse-eod")
    try:
        futures = [prod.send(settings.bars_topic, key=bar.symbol, value=bar.to_bytes()) for bar in bars]
        kafka_io.flush_or_fail(prod, futures)
    finally:
        prod.close(timeout=30)
    result = EodResult(page.date, page.date, len(bars), len(page.untraded), len(unknown))
    log.info(result.summary())
    return result
