"""The live DSE connector: strict page parsing, change-only publishing, backoff, dead letters, hours.

HTTP never leaves the process (httpx.MockTransport serves pages built from real
DSE rows, see tests/livepages.py); Kafka is the real broker of the session's
platform, with fresh topics per test. Time is a fake clock that sleep() advances.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dse_platform.config import Settings
from dse_platform.data.trading_calendar import DHAKA, TradingCalendar, weekday_calendar
from dse_platform.streams import kafka_io, live
from dse_platform.streams.live import LivePoller
from tests.support.livepages import HEADERS, Row, load_rows, render_page

ROWS = load_rows()
WED_11 = dt.datetime(2025, 10, 22, 11, 0, tzinfo=DHAKA)  # a Wednesday session, 2025-10-22
GOOD = render_page(ROWS, WED_11)


def by_symbol(symbol: str) -> Row:
    return next(r for r in ROWS if r.symbol == symbol)


# ---- the poller against the real broker ------------------------------------------------------------

class FakeClock:
    """now() and sleep(): sleeping advances the clock, and every sleep is recorded in ``events``."""

    def __init__(self, start: dt.datetime, events: list) -> None:
        self.moment = start
        self.events = events

    def now(self) -> dt.datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        self.moment += dt.timedelta(seconds=seconds)

    @property
    def sleeps(self) -> list[float]:
        return [e[1] for e in self.events if isinstance(e, tuple)]


Reply = str | int | Exception  # a page, an HTTP status, or an exception the transport raises


def transport(replies: list[Reply], events: list) -> httpx.MockTransport:
    """Serves ``replies`` in order (the last one repeats), recording each request in ``events``."""
    queue = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        events.append("GET")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, int):
            return httpx.Response(reply, text="Service Unavailable")
        return httpx.Response(200, text=reply, headers={"content-type": "text/html; charset=utf-8"})

    return httpx.MockTransport(handler)


@pytest.fixture
def settings(platform: Settings) -> Settings:
    tag = uuid.uuid4().hex[:10]
    own = platform.model_copy(update={"ticks_topic": f"test.live.ticks.{tag}",
                                      "deadletter_topic": f"test.live.deadletter.{tag}"})
    kafka_io.ensure_topics(own, [own.ticks_topic, own.deadletter_topic])
    return own


@pytest.fixture
def producer(settings: Settings) -> Iterator[KafkaProducer]:
    prod = kafka_io.producer(settings)
    yield prod
    prod.close(timeout=10)


@pytest.fixture
def make_poller(settings: Settings, producer: KafkaProducer) -> Iterator[Callable[..., tuple]]:
    clients: list[httpx.Client] = []

    def make(replies: list[Reply], start: dt.datetime = WED_11,
             calendar: TradingCalendar | None = None) -> tuple[LivePoller, FakeClock]:
        events: list = []
        clock = FakeClock(start, events)
        client = httpx.Client(transport=transport(replies, events))
        clients.append(client)
        poller = LivePoller(settings, client, producer, calendar or weekday_calendar(), clock.now, clock.sleep)
        return poller, clock

    yield make
    for client in clients:
        client.close()


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Every record of ``topic``, waiting until ``expected`` arrived; fails on more or fewer."""
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=500,
                             value_deserializer=json.loads, key_deserializer=bytes.decode)
    try:
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            records += [{"key": m.key, **m.value} for m in consumer]
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        on_broker = sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()
    assert (len(records), on_broker) == (expected, expected)
    return records


def expected_ticks(rows: list[Row], as_of: dt.datetime) -> dict[str, dict[str, Any]]:
    return {r.symbol: {**r.expected(), "key": r.symbol, "date": as_of.date().isoformat(),
                       "as_of": as_of.isoformat(), "source": "live"} for r in rows}


def without_produced_at(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["symbol"]: {k: v for k, v in r.items() if k != "produced_at"} for r in records}


services = pytest.mark.services


@services
def test_normal_page_publishes_every_instrument_once(settings: Settings, make_poller) -> None:
    poller, _ = make_poller([GOOD])
    result = poller.poll_once()
    assert (result.published, result.unchanged, result.deadletters, result.error) == (632, 0, 0, None)
    ticks = read_topic(settings, settings.ticks_topic, 632)
    assert without_produced_at(ticks) == expected_ticks(ROWS, WED_11)
    known = next(t for t in ticks if t["symbol"] == "1JANATAMF")  # CSV: LTP 2.9, volume 1201483
    assert (known["ltp"], known["volume"], known["date"], known["as_of"]) == (
        2.9, 1201483, "2025-10-22", "2025-10-22T11:00:00+06:00")
    assert all(t["produced_at"] == int(WED_11.timestamp() * 1000) for t in ticks)
    read_topic(settings, settings.deadletter_topic, 0, timeout_s=2)


@services
def test_unchanged_page_publishes_nothing(settings: Settings, make_poller) -> None:
    later = WED_11 + dt.timedelta(minutes=1)  # the heading time moves on, the values do not
    poller, _ = make_poller([GOOD, render_page(ROWS, later)])
    assert poller.poll_once().published == 632
    result = poller.poll_once()
    assert (result.published, result.unchanged, result.error) == (0, 632, None)
    read_topic(settings, settings.ticks_topic, 632)


@services
def test_one_changed_instrument_is_published_alone(settings: Settings, make_poller) -> None:
    later = WED_11 + dt.timedelta(minutes=1)
    old = by_symbol("1JANATAMF")
    new = old.with_(ltp=old.ltp + Decimal("0.1"), trades=old.trades + 3, volume=old.volume + 5000)
    changed = [new if r.symbol == old.symbol else r for r in ROWS]
    poller, _ = make_poller([GOOD, render_page(changed, later)])
    poller.poll_once()
    result = poller.poll_once()
    assert (result.published, result.unchanged) == (1, 631)
    ticks = read_topic(settings, settings.ticks_topic, 633)
    last = [t for t in ticks if t["symbol"] == "1JANATAMF"]
    assert len(last) == 2
    fresh = max(last, key=lambda t: t["as_of"])
    assert (fresh["ltp"], fresh["trades"], fresh["volume"], fresh["as_of"]) == (
        3.0, 148, 1206483, later.isoformat())


@services
def test_layout_change_sends_one_dead_letter_and_keeps_running(settings: Settings, make_poller,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    broken = render_page(ROWS, WED_11, headers=[*HEADERS[:-1], "VOL"])
    poller, clock = make_poller([broken, broken, GOOD])
    with caplog.at_level(logging.WARNING, logger="dse_platform.streams.live"):
        poller.run(max_polls=3)
    assert clock.sleeps == [30, 30]  # the normal interval, no backoff
    (letter,) = read_topic(settings, settings.deadletter_topic, 1)
    assert letter["reason"].startswith("header: expected ['#', 'TRADING CODE'")
    assert "'VOL'" in letter["reason"] and letter["source"] == "live" and letter["topic"] is None
    assert letter["raw"].encode("latin-1") == broken.encode("utf-8")
    assert len(read_topic(settings, settings.ticks_topic, 632)) == 632
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "dse_platform.streams.live" and r.levelno == logging.WARNING]
    assert sum("layout" in w for w in warnings) == 2


@services
def test_http_errors_back_off_and_recover(settings: Settings, make_poller,
                                          caplog: pytest.LogCaptureFixture) -> None:
    poller, clock = make_poller([500, 429, httpx.ReadTimeout("read timed out"), GOOD, 503, GOOD])
    with caplog.at_level(logging.WARNING, logger="dse_platform.streams.live"):
        poller.run(max_polls=6)  # must not raise
    assert clock.events.count("GET") == 6
    assert clock.sleeps == [5, 10, 20, 30, 5]  # doubling, the interval after success, reset
    read_topic(settings, settings.ticks_topic, 632)  # the second good page changed nothing
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "dse_platform.streams.live" and r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert "HTTP 500" in warnings[0] and "HTTP 429" in warnings[1] and "ReadTimeout" in warnings[2]
    assert "HTTP 503" in warnings[3]


@services
def test_connect_timeout_result(settings: Settings, make_poller) -> None:
    poller, _ = make_poller([httpx.ConnectTimeout("connect timed out"), httpx.TimeoutException("slow")])
    first, second = poller.poll_once(), poller.poll_once()
    assert (first.wait_s, second.wait_s) == (5, 10)
    assert "ConnectTimeout" in (first.error or "") and first.published == 0


HOLIDAY_CALENDAR = TradingCalendar(  # Thursday 2025-10-23 closed, known for 19-30 October
    sessions=tuple(dt.date(2025, 10, d) for d in (19, 20, 21, 22, 26, 27, 28, 29, 30)),
    coverage=((dt.date(2025, 10, 19), dt.date(2025, 10, 30)),))


@services
@pytest.mark.parametrize(("start", "calendar", "opens"), [
    (dt.datetime(2025, 10, 24, 12, 0, tzinfo=DHAKA), None, dt.datetime(2025, 10, 26, 10, 0, tzinfo=DHAKA)),
    (dt.datetime(2025, 10, 22, 16, 0, tzinfo=DHAKA), None, dt.datetime(2025, 10, 23, 10, 0, tzinfo=DHAKA)),
    (dt.datetime(2025, 10, 22, 14, 30, tzinfo=DHAKA), None, dt.datetime(2025, 10, 23, 10, 0, tzinfo=DHAKA)),
    (dt.datetime(2025, 10, 26, 3, 0, tzinfo=dt.UTC), None, dt.datetime(2025, 10, 26, 10, 0, tzinfo=DHAKA)),
    (dt.datetime(2025, 10, 23, 10, 30, tzinfo=DHAKA), HOLIDAY_CALENDAR,
     dt.datetime(2025, 10, 26, 10, 0, tzinfo=DHAKA)),
], ids=["friday", "after-close", "at-close", "before-open-utc-clock", "holiday"])
def test_outside_hours_sleeps_until_the_next_session(settings: Settings, make_poller, start: dt.datetime,
                                                     calendar: TradingCalendar | None,
                                                     opens: dt.datetime) -> None:
    poller, clock = make_poller([render_page(ROWS, opens)], start=start, calendar=calendar)
    poller.run(max_polls=1)
    assert clock.events == [("sleep", (opens - start).total_seconds()), "GET"]  # no request before
    assert clock.now() == opens
    ticks = read_topic(settings, settings.ticks_topic, 632)
    assert {t["date"] for t in ticks} == {opens.date().isoformat()}


@services
def test_run_wires_real_clients_without_polling(settings: Settings) -> None:
    tag = uuid.uuid4().hex[:10]
    fresh = settings.model_copy(update={"ticks_topic": f"test.live.run.{tag}",
                                        "deadletter_topic": f"test.live.run-dl.{tag}"})
    live.run(fresh, max_polls=0)
    consumer = KafkaConsumer(bootstrap_servers=fresh.bootstrap_servers)
    try:
        assert {fresh.ticks_topic, fresh.deadletter_topic} <= consumer.topics()
    finally:
        consumer.close()


