"""64-bit reminder and occurrence ids; a give-up deadline for retried occurrences

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00.000000

On PostgreSQL the id columns were SERIAL (32-bit): at a million users the occurrence ids
run out in about three years. Widening rewrites the tables under a lock, which takes seconds
for millions of rows; run it with the bots stopped. SERIAL sequences are typed too, so they
are widened as well. SQLite's ids are 64-bit rowids already; only the new column is added.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDENED = (("reminders", "id"), ("occurrences", "id"), ("occurrences", "reminder_id"))


def upgrade() -> None:
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _WIDENED:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())
    op.execute("ALTER SEQUENCE reminders_id_seq AS bigint")
    op.execute("ALTER SEQUENCE occurrences_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE occurrences_id_seq AS integer")
        op.execute("ALTER SEQUENCE reminders_id_seq AS integer")
        for table, column in reversed(_WIDENED):
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
    with op.batch_alter_table("occurrences", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
