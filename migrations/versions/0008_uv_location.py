"""Locations kept (with consent, rounded to about 10 km) for UV forecasts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 00:00:00.000000

A new table only: quick on a populated database. Outdoor mode needs no schema of its
own: its reapply reminders are occurrences of a hidden "reapply" reminder.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uv_locations",
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("uv_locations")
