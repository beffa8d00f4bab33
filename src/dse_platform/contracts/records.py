"""The JSON values of the four Kafka topics (``dse.bars.v1``, ``dse.ticks.v1``, ``dse.predictions.v1``,
``dse.deadletter.v1``): one definition that every producer builds its records through.

The models are strict (no coercion, no unknown fields, no NaN): we produce every one of these
records, so anything that does not fit is a bug on our side and should fail where it is made.
Version 1 keeps its version in the topic name, so ``schema_version`` is accepted (and checked)
when a record carries it but is not written: the bytes stay the ones consumers already read.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

#: raw bytes kept in a dead letter of the stream: a bar is ~200 bytes, so this shows any bad record's start
MAX_DEADLETTER_RAW_BYTES = 4096

#: the largest record batch the bar and tick topics accept (their ``max.message.bytes``): Kafka's own default,
#: set on the topics so a broker configured larger does not let bigger records in. A replay batch (librdkafka's
#: ``batch.size`` of 1,000,000) fits; a single record over the parser's 64 KiB is a ``too_large`` dead letter.
MAX_TOPIC_MESSAGE_BYTES = 1_048_588

#: fields a consumer refuses a bar without (the others have consumer-side defaults or may be null)
BAR_REQUIRED = ("symbol", "date", "open", "high", "low", "close")

#: fields a consumer refuses a tick without
TICK_REQUIRED = ("symbol", "date", "ltp", "high", "low")


def epoch_ms() -> int:
    """Now as epoch milliseconds, the unit of every ``produced_at``/``scored_at`` on the wire."""
    return int(time.time() * 1000)


class WireRecord(BaseModel):
    """What the four records share: strictness and the schema version."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, exclude=True,
        description="record layout version; v1 is implied by the topic name and not written")

    @classmethod
    def wire_fields(cls) -> tuple[str, ...]:
        """The JSON keys a value carries, in the order they are written."""
        return tuple(name for name, field in cls.model_fields.items() if not field.exclude)

    def to_bytes(self) -> bytes:
        """The Kafka value: compact UTF-8 JSON."""
        return self.model_dump_json().encode("utf-8")


class BarRecord(WireRecord):
    """``dse.bars.v1``: one instrument's end-of-day (or intraday-so-far) bar. Key: the trading code."""

    symbol: str = Field(description="DSE trading code")
    date: dt.date = Field(description="trading date in Asia/Dhaka, YYYY-MM-DD")
    open: float
    high: float
    low: float
    close: float
    volume: float | None = Field(description="shares traded")
    trades: int | None = Field(description="number of trades")
    value_mn: float | None = Field(description="turnover in million BDT")
    source: Literal["replay", "live", "eod"] = Field(description="eod: DSE's official day-end bar (`dse eod`)")
    produced_at: int = Field(description="when the record was produced, epoch ms")


class TickRecord(WireRecord):
    """``dse.ticks.v1``: one instrument's snapshot from DSE's latest-share-price page. Key: the trading code.

    The numeric fields are the page's columns in its order; DSE's ``--`` (no trade yet) arrives as 0.
    """

    symbol: str = Field(description="DSE trading code")
    date: dt.date = Field(description="trading date of the snapshot in Asia/Dhaka, YYYY-MM-DD")
    ltp: float = Field(description="last traded price")
    high: float
    low: float
    close: float = Field(description="closing price so far")
    ycp: float = Field(description="yesterday's closing price")
    change: float
    trades: int
    value_mn: float = Field(description="turnover in million BDT")
    volume: int
    as_of: AwareDatetime = Field(description="the page's as-of moment, ISO 8601 with the +06:00 offset")
    source: Literal["live"]
    produced_at: int = Field(description="when the record was produced, epoch ms")


class PredictionRecord(WireRecord):
    """``dse.predictions.v1``: what the streaming job served for one bar. Key: the trading code.

    Production's predictions only: the challenger's shadow predictions stay in the serving database
    (``predictions.role``), so a consumer acting on this topic never acts on a model nobody promoted,
    and the latest record per key stays the served one.
    """

    symbol: str = Field(description="DSE trading code")
    date: dt.date = Field(description="the scored bar's trading date, YYYY-MM-DD")
    probability: float = Field(ge=0, le=1, description="P(next close > this close)")
    label: int = Field(ge=0, le=1, description="1 when probability >= 0.5")
    model_name: str
    model_version: str
    feature_version: str
    produced_at: int = Field(description="when the scored bar was produced, epoch ms")
    scored_at: int = Field(description="when it was scored, epoch ms")


class DeadLetterRecord(WireRecord):
    """``dse.deadletter.v1``: a record that failed parsing or validation, where it came from and why.

    Key: the source topic (stream) or ``live`` (a page the live connector could not parse).
    """

    raw: str = Field(description="the raw bytes as latin-1 text (lossless), cut to a limit")
    raw_size: int = Field(ge=0, description="length of the raw bytes before the cut")
    reason: str
    source: Literal["stream", "live"] = Field(description="which producer rejected it")
    topic: str | None = Field(description="Kafka topic the raw bytes were read from; null for the live page")
    partition: int | None
    offset: int | None
    produced_at: int = Field(default_factory=epoch_ms, description="when the dead letter was made, epoch ms")

    @classmethod
    def of(cls, raw: bytes, reason: str, source: Literal["stream", "live"], topic: str | None = None,
           partition: int | None = None, offset: int | None = None,
           limit: int = MAX_DEADLETTER_RAW_BYTES) -> Self:
        """A dead letter keeping the first ``limit`` raw bytes: enough to diagnose, small enough for Kafka."""
        return cls(raw=raw[:limit].decode("latin-1"), raw_size=len(raw), reason=reason, source=source,
                   topic=topic, partition=partition, offset=offset)
