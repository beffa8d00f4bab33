"""`dse eod`: DSE's day-end archive -> official bars on the real broker, idempotent, holidays and retries.

HTTP never leaves the process (httpx.MockTransport serves the day-end page built from the real
2025-10-22 rows, see tests/support/livepages.py); Kafka is the session platform's broker, with a
fresh bars topic per test.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import httpx
import pytest

from dse_platform.config import Settings
from dse_platform.contracts.records import BarRecord
from dse_platform.streams import kafka_io
from dse_platform.streams.end_of_day import EodResult, official_at_ms, publish_day
from tests.integration.test_live import Reply, read_topic, transport
from tests.support.livepages import load_day_end_rows, render_day_end_page

ROWS = load_day_end_rows()
TRADED = [r for r in ROWS if r.traded]
DAY = dt.date(2025, 10, 22)  # a Wednesday session
PAGE = render_day_end_page(ROWS)

pytestmark = pytest.mark.services


@pytest.fixture
def settings(platform: Settings) -> Settings:
    own = platform.model_copy(update={"bars_topic": f"test.eod.bars.{uuid.uuid4().hex[:10]}",
                                      "eod_url": "https://dse.test/day_end_archive.php"})
    kafka_io.ensure_topics(own, [own.bars_topic])
    return own


def run(settings: Settings, replies: list[Reply], day: dt.date = DAY) -> tuple[EodResult, int]:
    """publish_day against ``replies`` served in order; returns its result and the number of requests."""
    events: list = []
    with httpx.Client(transport=transport(replies, events)) as client:
        return publish_day(settings, day, client), events.count("GET")


def expected_bars() -> dict[str, dict]:
    return {r.symbol: {"key": r.symbol, "symbol": r.symbol, "date": DAY.isoformat(), "open": float(r.open),
                       "high": float(r.high), "low": float(r.low), "close": float(r.close),
                       "volume": float(r.volume), "trades": r.trades, "value_mn": float(r.value_mn),
                       "source": "eod", "produced_at": official_at_ms(DAY)} for r in TRADED}


def test_publishes_exactly_the_traded_instruments_official_bars(settings: Settings) -> None:
    result, requests = run(settings, [PAGE])
    assert (result, requests) == (EodResult(DAY, DAY, published=390, untraded=242, unknown=0), 1)
    records = read_topic(settings, settings.bars_topic, len(TRADED))
    for record in records:
        bar = BarRecord.model_validate_json(json.dumps({k: v for k, v in record.items() if k != "key"}))
        assert bar.source == "eod" and bar.symbol == record["key"]
    assert {r["symbol"]: r for r in records} == expected_bars()


def test_a_second_run_publishes_identical_bars(settings: Settings) -> None:
    first, _ = run(settings, [PAGE])
    second, _ = run(settings, [PAGE])
    assert first == second
    copies: dict[str, list[dict]] = {}
    for record in read_topic(settings, settings.bars_topic, 2 * len(TRADED)):
        copies.setdefault(record["symbol"], []).append(record)
    expected = expected_bars()
    assert copies == {symbol: [bar, bar] for symbol, bar in expected.items()}


def test_a_holiday_publishes_nothing(settings: Settings) -> None:
    """Asked for Friday 2025-10-24, DSE shows Wednesday's session: no bars, and the result says so."""
    friday = dt.date(2025, 10, 24)
    result, _ = run(settings, [PAGE], day=friday)
    assert result == EodResult(friday, DAY) and not result.session
    assert "nothing published" in result.summary()
    assert read_topic(settings, settings.bars_topic, 0) == []


def test_http_503_then_200_is_retried(settings: Settings) -> None:
    result, requests = run(settings, [503, PAGE])
    assert (requests, result.published) == (2, len(TRADED))
    assert len(read_topic(settings, settings.bars_topic, len(TRADED))) == len(TRADED)
