"""The serving tables: bars, predictions, features, prediction_outcomes, dead_letters, model_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Databases made before migrations existed (``METADATA.create_all``, any generation of it) are
adopted, not failed: tables and indexes already there are kept with their rows, missing ones
are created. Only this baseline does that; later revisions change a known schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: aware UTC timestamps (tables.UtcDateTime stores through this type)
UTC_DATETIME = sa.DateTime(timezone=True)

INDEXES = {
    "ix_bars_date": ("bars", ["date"]),
    "ix_predictions_date": ("predictions", ["date"]),
    "ix_features_date": ("features", ["date"]),
    "ix_prediction_outcomes_date": ("prediction_outcomes", ["date"]),
    "ix_dead_letters_received_at": ("dead_letters", ["received_at"]),
    "ix_model_events_at": ("model_events", ["at"]),
}


def upgrade() -> None:
    op.create_table(
        "bars",
        sa.Column("symbol", sa.String, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("open", sa.Float, nullable=False),
        sa.Column("high", sa.Float, nullable=False),
        sa.Column("low", sa.Float, nullable=False),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("volume", sa.Float),
        sa.Column("trades", sa.BigInteger),
        sa.Column("value_mn", sa.Float),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("produced_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "predictions",
        sa.Column("symbol", sa.String, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("label", sa.SmallInteger, nullable=False),
        sa.Column("model_name", sa.String, nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("feature_version", sa.String, nullable=False),
        sa.Column("produced_at", sa.BigInteger, nullable=False),
        sa.Column("scored_at", UTC_DATETIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "features",
        sa.Column("symbol", sa.String, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("feature_version", sa.String, nullable=False),
        sa.Column("values", sa.Text, nullable=False),
        sa.Column("computed_at", UTC_DATETIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "prediction_outcomes",
        sa.Column("symbol", sa.String, primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("next_date", sa.Date, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("label", sa.SmallInteger, nullable=False),
        sa.Column("actual", sa.SmallInteger, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("resolved_at", UTC_DATETIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "dead_letters",
        sa.Column("topic", sa.String, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("raw", sa.LargeBinary),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("field", sa.String),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("event", sa.String, nullable=False),
        sa.Column("model_name", sa.String, nullable=False),
        sa.Column("version", sa.String),
        sa.Column("previous_version", sa.String),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        if_not_exists=True,
    )
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
    for table in ("model_events", "dead_letters", "prediction_outcomes", "features", "predictions", "bars"):
        op.drop_table(table)
