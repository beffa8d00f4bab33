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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from kafka import KafkaProducer

from dse_platform.config import Settings
from dse_platform.contracts.records import DeadLetterRecord, TickRecord
from dse_platform.data.trading_calendar import DHAKA, TradingCalendar, weekday_calendar
from dse_platform.streams import kafka_io
from dse_platform.streams.live_page import VALUE_FIELDS, LayoutError, parse_latest_page

log = logging.getLogger(__name__)




USER_AGENT = "dse-platform-live/1.0 (polls during the DSE session only)"






BACKOFF_BASE_S = 5.0


BACKOFF_CAP_S = 300.0


MAX_DEADLETTER_VALUE = 1_000_000  # encoded dead letter must stay under Kafka's default 1 MiB message limit


RETRYABLE_STATUS = 429


def tick_record(row: dict[str, Any], as_of: dt.datetime, produced_at_ms: int) -> dict[str, Any]:
    """The ``dse.ticks.v1`` value (a `TickRecord`): the instrument's snapshot, its trading date and as-of time."""
    local = as_of.astimezone(DHAKA)
    return TickRecord(symbol=row["symbol"], date=local.date(), **{field: row[field] for field in VALUE_FIELDS},
                      as_of=local, source="live", produced_at=produced_at_ms).model_dump(mode="json")


def deadletter_value(raw: bytes, reason: str) -> bytes:
    """A dead letter with as much of the raw page as fits one Kafka message.

    The whole page is what diagnoses a layout change, so this path keeps far more than the stream's
    few KiB. Encoding grows the page (a byte above 0x7f takes two, a control byte six: \\u00XX), and a
    dead letter the broker rejects would turn a layout change into a crash: the cut halves until it fits.
    """
    cut = len(raw)
    while True:
        note = "" if cut == len(raw) else f" (raw page truncated from {len(raw)} bytes)"
        value = DeadLetterRecord.of(raw, reason + note, source="live", limit=cut).to_bytes()
        if len(value) <= MAX_DEADLETTER_VALUE or not cut:
            return value
        cut //= 2


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failed fetches: 5, 10, 20 ... capped at 300."""
    return min(BACKOFF_BASE_S * 2 ** max(failures - 1, 0), BACKOFF_CAP_S)


@dataclass(frozen=True)
class PollResult:
    """What one poll did, and how long to wait before the next one."""

    wait_s: float
    published: int = 0
    unchanged: int = 0
    deadletters: int = 0
    error: str | None = None


class LivePoller:
    """Fetch, parse and publish changes; clock, sleep and HTTP are injected so tests control time."""

    def __init__(self, settings: Settings, client: httpx.Client, producer: KafkaProducer,
                 calendar: TradingCalendar, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(DHAKA),
                 sleep: Callable[[float], None] = time.sleep, url: str | None = None,
                 poll_interval_s: float | None = None) -> None:
        self.settings = settings
        self.client = client
        self.producer = producer
        self.calendar = calendar
        self.now = now
        self.sleep = sleep
        self.url = url or settings.live_url
        self.poll_interval_s = poll_interval_s or settings.live_poll_interval_s
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
                    log.info("DSE is closed at %s and opens next %s: the session's ingest is over "
                                "(%d polls)", moment.astimezone(DHAKA).isoformat(), opens.isoformat(), polls)
                    return
                wait = max((opens - moment).total_seconds(), 0.0)
                if max_wait_s is not None and wait > max_wait_s:
                    log.info("DSE opens in %.0f s, more than the %.0f s this run may wait: ending", wait,
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
        poll_interval_s: float | None = None, url: str | None = None) -> None:
    """`dse live`: poll DSE with real HTTP, the store's trading calendar and a no-loss producer."""
    from dse_platform.data import store  # pandas/pyarrow: only needed here, not by the parser

    if store.exists(settings.store_dir):
        calendar = store.read_calendar(settings.store_dir)
    else:
        log.warning("no bar store at %s; assuming every Sunday-Thursday is a session (run `dse ingest` "
                    "to learn closures)", settings.store_dir)
        calendar = weekday_calendar()
    kafka_io.ensure_topics(settings, [settings.ticks_topic, settings.deadletter_topic])
    prod = kafka_io.producer(settings, client_id="dse-live")
    try:
        with httpx.Client(timeout=settings.live_http_timeout_s, headers={"User-Agent": USER_AGENT},
                          follow_redirects=True) as client:
            LivePoller(settings, client, prod, calendar, poll_interval_s=poll_interval_s,
                       url=url or settings.live_url).run(max_polls, until_close, max_wait_s)
    finally:
        prod.close(timeout=30)
