"""The live DSE connector: polls DSE's latest-share-price page and streams changed snapshots to Kafka.

DSE publishes no API, only an HTML page refreshed during the session. We parse it
strictly, because a silent change of layout (a renamed or moved column) would
otherwise stream wrong prices: anything unexpected becomes a ``LayoutError`` and
one dead letter holding the raw page, and the poller keeps going. Only instruments
whose values changed since the last poll are published, so the ticks topic carries
changes, not 650 copies of the same snapshot every 30 seconds. Outside the session
(10:00-14:30 Asia/Dhaka, Sunday-Thursday, minus closures) it sleeps until the next
opening instead of hammering the site.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx
from kafka import KafkaProducer

from dse_platform import kafka_io
from dse_platform.config import Settings
from dse_platform.errors import PlatformError
from dse_platform.trading_calendar import DHAKA, TradingCalendar, weekday_calendar

log = logging.getLogger(__name__)

DSE_LATEST_URL: str = Settings.model_fields["live_url"].default
USER_AGENT = "dse-platform-live/1.0 (polls every 30 s during the session only)"
DEFAULT_POLL_INTERVAL_S = 30.0
HTTP_TIMEOUT_S = 20.0
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 300.0
MAX_DEADLETTER_RAW = 1_000_000  # raw page bytes kept in a dead letter ("1 MB")
MAX_DEADLETTER_VALUE = 1_000_000  # encoded dead letter must stay under Kafka's default 1 MiB message limit

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
RETRYABLE_STATUS = 429


class LayoutError(PlatformError):
    """DSE's page no longer looks the way the parser expects; its values cannot be trusted."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem, "compare the page with live.parse_latest_page and update the parser")


# ---- parsing -------------------------------------------------------------------------------------

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


# ---- records ---------------------------------------------------------------------------------------

def tick_record(row: dict[str, Any], as_of: dt.datetime, produced_at_ms: int) -> dict[str, Any]:
    """The ``dse.ticks.v1`` value: the instrument's snapshot, its trading date and as-of time."""
    local = as_of.astimezone(DHAKA)
    record: dict[str, Any] = {"symbol": row["symbol"], "date": local.date().isoformat()}
    record.update({field: row[field] for field in VALUE_FIELDS})
    record.update({"as_of": local.isoformat(), "source": "live", "produced_at": produced_at_ms})
    return record


def deadletter_value(raw: bytes, reason: str) -> bytes:
    """A dead letter with the raw page cut to 1 MB, and further if its JSON would exceed Kafka's limit.

    JSON escaping can grow HTML several-fold (non-ASCII bytes become \\u00XX), and
    a dead letter the broker rejects would turn a layout change into a crash.
    """
    cut = raw[:MAX_DEADLETTER_RAW]
    note = "" if len(cut) == len(raw) else f" (raw page truncated from {len(raw)} bytes)"
    while True:
        value = kafka_io.encode_deadletter(cut, reason + note, source="live", topic=None)
        if len(value) <= MAX_DEADLETTER_VALUE or not cut:
            return value
        cut = cut[: len(cut) // 2]
        note = f" (raw page truncated from {len(raw)} bytes)"


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failed fetches: 5, 10, 20 ... capped at 300."""
    return min(BACKOFF_BASE_S * 2 ** max(failures - 1, 0), BACKOFF_CAP_S)


# ---- polling ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PollResult:
    """What one poll did, and how long to wait before the next one."""

    published: int = 0
    unchanged: int = 0
    deadletters: int = 0
    error: str | None = None
    wait_s: float = DEFAULT_POLL_INTERVAL_S


class LivePoller:
    """Fetch, parse and publish changes; clock, sleep and HTTP are injected so tests control time."""

    def __init__(self, settings: Settings, client: httpx.Client, producer: KafkaProducer,
                 calendar: TradingCalendar, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(DHAKA),
                 sleep: Callable[[float], None] = time.sleep, url: str = DSE_LATEST_URL,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.settings = settings
        self.client = client
        self.producer = producer
        self.calendar = calendar
        self.now = now
        self.sleep = sleep
        self.url = url
        self.poll_interval_s = poll_interval_s
        self.last: dict[str, tuple] = {}  # symbol -> values last published (acknowledged)
        self.failures = 0  # consecutive failed fetches, drives the backoff
        self.last_layout_error: str | None = None  # reason already dead-lettered in this bad streak

    def poll_once(self) -> PollResult:
        """Fetch the page once and publish what changed; never raises for DSE-side trouble."""
        try:
            response = self.client.get(self.url)
        except httpx.RequestError as exc:
            return self._failed(f"fetching {self.url} failed: {type(exc).__name__}: {exc}")
        if response.status_code >= 500 or response.status_code == RETRYABLE_STATUS:
            return self._failed(f"DSE answered HTTP {response.status_code} for {self.url}")
        if response.status_code >= 400:
            return self._failed(f"DSE answered HTTP {response.status_code} for {self.url} "
                                "(the page may have moved)", level=logging.ERROR)
        self.failures = 0
        raw = response.content
        try:
            as_of, rows = parse_latest_page(response.text)
        except LayoutError as exc:
            return self._layout_changed(raw, exc.problem)
        self.last_layout_error = None
        return self._publish(as_of, rows)

    def run(self, max_polls: int | None = None, until_close: bool = False, max_wait_s: float | None = None) -> None:
        """Poll every interval while the market is open, sleep until the next open otherwise.

        ``max_polls`` bounds the number of fetches (None: forever); waits outside the
        session do not count. ``until_close`` ends the run at the close instead (or at
        once when no session opens later today): one run per session, as Airflow runs it.
        ``max_wait_s`` ends it instead of waiting longer than that for an open.
        """
        polls = 0
        while max_polls is None or polls < max_polls:
            moment = self.now()
            if not self.calendar.in_session(moment):
                opens = self.calendar.next_open(moment)
                if until_close and opens.astimezone(DHAKA).date() != moment.astimezone(DHAKA).date():
                    log.warning("DSE is closed at %s and opens next %s: the session's ingest is over "
                                "(%d polls)", moment.astimezone(DHAKA).isoformat(), opens.isoformat(), polls)
                    return
                wait = max((opens - moment).total_seconds(), 0.0)
                if max_wait_s is not None and wait > max_wait_s:
                    log.warning("DSE opens in %.0f s, more than the %.0f s this run may wait: ending", wait,
                                max_wait_s)
                    return
                log.info("DSE is closed at %s; sleeping %.0f s until %s", moment.astimezone(DHAKA).isoformat(),
                         wait, opens.isoformat())
                self.sleep(wait)
                continue
            result = self.poll_once()
            polls += 1
            if max_polls is not None and polls >= max_polls:
                return
            self.sleep(result.wait_s)

    # ---- internals ---------------------------------------------------------------------------------
    def _failed(self, problem: str, level: int = logging.WARNING) -> PollResult:
        self.failures += 1
        wait = backoff_delay(self.failures)
        log.log(level, "%s; retry %d in %.0f s", problem, self.failures, wait)
        return PollResult(error=problem, wait_s=wait)

    def _layout_changed(self, raw: bytes, reason: str) -> PollResult:
        if reason == self.last_layout_error:
            # Same breakage as the page already dead-lettered: one copy is enough to diagnose it.
            log.warning("DSE page layout still changed (%s); dead letter already sent", reason)
            return PollResult(error=reason, wait_s=self.poll_interval_s)
        future = self.producer.send(self.settings.deadletter_topic, key="live", value=deadletter_value(raw, reason))
        kafka_io.flush_or_fail(self.producer, [future])
        self.last_layout_error = reason
        log.warning("DSE page layout changed (%s); raw page sent to %s", reason, self.settings.deadletter_topic)
        return PollResult(deadletters=1, error=reason, wait_s=self.poll_interval_s)

    def _publish(self, as_of: dt.datetime, rows: list[dict[str, Any]]) -> PollResult:
        produced_at = int(self.now().timestamp() * 1000)
        changed: dict[str, tuple] = {}
        futures = []
        for row in rows:
            values = tuple(row[field] for field in VALUE_FIELDS)
            if self.last.get(row["symbol"]) == values or changed.get(row["symbol"]) == values:
                continue
            changed[row["symbol"]] = values
            value = json.dumps(tick_record(row, as_of, produced_at), separators=(",", ":")).encode("utf-8")
            futures.append(self.producer.send(self.settings.ticks_topic, key=row["symbol"], value=value))
        kafka_io.flush_or_fail(self.producer, futures)
        self.last.update(changed)  # only after the broker acknowledged them
        result = PollResult(published=len(futures), unchanged=len(rows) - len(futures),
                            wait_s=self.poll_interval_s)
        log.info("DSE snapshot as of %s: %d published, %d unchanged", as_of.isoformat(), result.published,
                 result.unchanged)
        return result


def run(settings: Settings, *, max_polls: int | None = None, until_close: bool = False,
        max_wait_s: float | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S, url: str | None = None) -> None:
    """`dse live`: poll DSE with real HTTP, the store's trading calendar and a no-loss producer."""
    from dse_platform import store  # pandas/pyarrow: only needed here, not by the parser

    if store.exists(settings.store_dir):
        calendar = store.read_calendar(settings.store_dir)
    else:
        log.warning("no bar store at %s; assuming every Sunday-Thursday is a session (run `dse ingest` "
                    "to learn closures)", settings.store_dir)
        calendar = weekday_calendar()
    kafka_io.ensure_topics(settings, [settings.ticks_topic, settings.deadletter_topic])
    prod = kafka_io.producer(settings, client_id="dse-live")
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT_S, headers={"User-Agent": USER_AGENT},
                          follow_redirects=True) as client:
            LivePoller(settings, client, prod, calendar, poll_interval_s=poll_interval_s,
                       url=url or settings.live_url).run(max_polls, until_close, max_wait_s)
    finally:
        prod.close(timeout=30)
