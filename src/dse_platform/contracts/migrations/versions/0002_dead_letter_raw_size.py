"""dead_letters.raw_size: the length of a dead letter's raw bytes before they were cut to 4 KiB.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Rows from before this revision keep a null size. A database made by ``METADATA.create_all`` from
the current declarations already has the column and is adopted as the baseline does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "raw_size" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("dead_letters")}:
        op.add_column("dead_letters", sa.Column("raw_size", sa.BigInteger))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 cannot drop a column in place
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("raw_size")
