"""At most one weekly summary and one outdoor "reapply" reminder per user

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 00:00:00.000000

Two processes on one PostgreSQL could each find a user without their weekly summary and
make one at the same moment: two summaries every Sunday. A partial unique index closes
that; the loser of such a race now finds the winner's row. Any duplicates made before are
removed first, keeping the oldest (their occurrences go with them, by the foreign key).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HIDDEN = "kind IN ('weekly', 'reapply')"


def upgrade() -> None:
    op.execute(
        "DELETE FROM reminders WHERE kind IN ('weekly', 'reapply') AND id NOT IN "
        "(SELECT MIN(id) FROM reminders WHERE kind IN ('weekly', 'reapply') "
        "GROUP BY user_id, kind)"
    )
    op.create_index(
        "uq_reminders_user_hidden_kind",
        "reminders",
        ["user_id", "kind"],
        unique=True,
        sqlite_where=sa.text(_HIDDEN),
        postgresql_where=sa.text(_HIDDEN),
    )


def downgrade() -> None:
    op.drop_index("uq_reminders_user_hidden_kind", table_name="reminders")
