"""The serving database's tables (SQLAlchemy Core), the same on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator):
    """A timestamp that is aware UTC in Python on every backend; naive values are refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the serving database stores aware UTC timestamps")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(name: str) -> Column:
    """When the row was last written: filled in when absent, and not compared when deciding whether a row changed."""
    return Column(name, UtcDateTime, nullable=False, default=utcnow, info={"stamp": True})


#: which registry alias scored a prediction: ``production`` is what was served, ``challenger`` ran in shadow
ROLES = ("production", "challenger")
PRODUCTION, CHALLENGER = ROLES


def _role() -> Column:
    """The scoring role, last in the primary key (symbol, date, role): one bar has a row per role that scored it.

    Declared after the other columns, where migration 0003 adds it, so a migrated database and one made by
    ``create_all`` have the same column order.
    """
    return Column("role", String, primary_key=True, nullable=False, server_default=PRODUCTION)


METADATA = MetaData()

#: where alembic records the schema's revision: our own name, so it never collides with Airflow's or MLflow's
#: alembic tables when they share the database
VERSION_TABLE = "dse_alembic_version"


bars = Table(
    "bars", METADATA,
    Column("symbol", String, primary_key=True),
    Column("date", Date, primary_key=True),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("volume", Float),
    Column("trades", BigInteger),
    Column("value_mn", Float),
    Column("source", String, nullable=False),  # replay | live
    Column("produced_at", BigInteger, nullable=False),  # epoch ms
    _stamp("updated_at"),
    Index("ix_bars_date", "date"),
)


predictions = Table(
    "predictions", METADATA,
    Column("symbol", String, primary_key=True),
    Column("date", Date, primary_key=True),  # the scored bar's date
    Column("probability", Float, nullable=False),  # P(next close > this close)
    Column("label", SmallInteger, nullable=False),
    Column("model_name", String, nullable=False),
    Column("model_version", String, nullable=False),
    Column("feature_version", String, nullable=False),
    Column("produced_at", BigInteger, nullable=False),  # of the bar, epoch ms
    _stamp("scored_at"),
    _role(),
    Index("ix_predictions_date", "date"),
    Index("ix_predictions_role_date", "role", "date"),
    Index("ix_predictions_role_scored_at", "role", "scored_at"),  # the dashboard's lag and throughput
)


# what the stream computed for each bar (JSON list in FEATURE_NAMES order): parity checks and drift monitoring
features = Table(
    "features", METADATA,
    Column("symbol", String, primary_key=True),
    Column("date", Date, primary_key=True),
    Column("feature_version", String, nullable=False),
    Column("values", Text, nullable=False),
    _stamp("computed_at"),
    Index("ix_features_date", "date"),
)


prediction_outcomes = Table(
    "prediction_outcomes", METADATA,
    Column("symbol", String, primary_key=True),
    Column("date", Date, primary_key=True),
    Column("next_date", Date, nullable=False),
    Column("probability", Float, nullable=False),
    Column("label", SmallInteger, nullable=False),
    Column("actual", SmallInteger, nullable=False),
    Column("correct", Boolean, nullable=False),
    Column("model_version", String, nullable=False),
    _stamp("resolved_at"),
    _role(),
    Index("ix_prediction_outcomes_date", "date"),
    Index("ix_prediction_outcomes_role_date", "role", "date"),
)


dead_letters = Table(
    "dead_letters", METADATA,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("raw", LargeBinary),  # the first MAX_DEADLETTER_RAW_BYTES (records.py)
    Column("raw_size", BigInteger),  # length of the raw bytes before the cut; null for rows older than 0002
    Column("reason", String, nullable=False),
    Column("field", String),  # the offending field, when known
    _stamp("received_at"),
    Index("ix_dead_letters_received_at", "received_at"),
)


model_events = Table(
    "model_events", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, default=utcnow),
    Column("event", String, nullable=False),  # promoted | held | forced | reloaded | registry_unreachable | alert ...
    Column("model_name", String, nullable=False),
    Column("version", String),
    Column("previous_version", String),
    Column("source", String, nullable=False),  # "dse promote", "stream", "monitoring", ...
    Column("details", Text, nullable=False),  # JSON object
    Index("ix_model_events_at", "at"),
)
#: the `model_events` source of the nightly retrain's decisions, followed by the logical date
NIGHTLY_SOURCE_PREFIX = "nightly retrain "
