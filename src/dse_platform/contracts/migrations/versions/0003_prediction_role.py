"""predictions.role and prediction_outcomes.role: which alias scored the row, part of the primary key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

The streaming job scores each bar with the ``production`` model and, in shadow, with the
``challenger`` one: both rows share (symbol, date), so ``role`` joins the primary key
(symbol, date, role). Rows from before this revision were all served, and become ``production``.
A database made by ``METADATA.create_all`` from the current declarations already has the column
and is adopted as the baseline does.

SQLite cannot change a primary key in place: batch mode recreates the table there (rows copied,
indexes rebuilt); PostgreSQL alters it in place. The primary key takes PostgreSQL's default name
``<table>_pkey``, so a migrated database and a ``create_all`` one carry the same names.
Downgrading deletes the challenger rows (they have no place in a (symbol, date) key).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("predictions", "prediction_outcomes")


def _primary_key(table: str, columns: list[str]) -> None:
    """Key the table on ``columns``, adding or dropping ``role`` (batch: recreated on SQLite, altered elsewhere)."""
    old = sa.inspect(op.get_bind()).get_pk_constraint(table).get("name")
    with op.batch_alter_table(table, recreate="auto") as batch:
        if old:
            batch.drop_constraint(old, type_="primary")
        if "role" in columns:
            # the recreated table's column flags must match its key: an unnamed key (SQLite, from before 0003)
            # cannot be dropped by name, so its columns stay flagged and role joins them
            batch.add_column(sa.Column("role", sa.String, primary_key=not old, nullable=False,
                                       server_default="production"))
        batch.create_primary_key(f"{table}_pkey", columns)
        if "role" not in columns:
            batch.drop_column("role")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in TABLES:
        if "role" not in {c["name"] for c in inspector.get_columns(table)}:
            _primary_key(table, ["symbol", "date", "role"])
        op.create_index(f"ix_{table}_role_date", table, ["role", "date"], if_not_exists=True)


def downgrade() -> None:
    for table in TABLES:
        op.execute(sa.text(f"DELETE FROM {table} WHERE role <> 'production'"))
        op.drop_index(f"ix_{table}_role_date", table_name=table)
        _primary_key(table, ["symbol", "date"])
