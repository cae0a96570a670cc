"""The weekly progress summary for everyone who already has reminders

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:00:00.000000

No schema change: the summary is a hidden reminder of kind "weekly" (Sunday 19:00 in the
user's zone, see progress_store.py). New users get it with their first reminder; this
gives it, switched on, to active users who had reminders before. Their first summary is
the next Sunday 19:00 in their zone (the default zone, MILIABOT_DEFAULT_TZ or UTC, for
users who never chose one); the dispatcher keeps it on time from then on. A thousand
rows per statement, so memory stays flat on a large database.
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 1000
_WHEN = sa.DateTime(timezone=True)
users = sa.table(
    "users", sa.column("id", sa.BigInteger), sa.column("timezone"), sa.column("status")
)
reminders = sa.table(
    "reminders",
    sa.column("id", sa.BigInteger),
    sa.column("user_id", sa.BigInteger),
    sa.column("kind"),
    sa.column("label"),
    sa.column("rule"),
    sa.column("paused", sa.Boolean),
    sa.column("next_due_at", _WHEN),
    sa.column("created_at", _WHEN),
    sa.column("updated_at", _WHEN),
)
preferences = sa.table(
    "user_preferences", sa.column("user_id", sa.BigInteger), sa.column("reminders_paused")
)


def _zone(key: str | None) -> ZoneInfo:
    for candidate in (key, os.environ.get("MILIABOT_DEFAULT_TZ"), "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _next_sunday_evening(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.astimezone(zone)
    day = local.date() + timedelta(days=(6 - local.weekday()) % 7)
    at = datetime.combine(day, time(19), tzinfo=zone)
    if at <= now:
        at = datetime.combine(day + timedelta(days=7), time(19), tzinfo=zone)
    return at.astimezone(UTC)


def upgrade() -> None:
    bind = op.get_bind()
    naive = bind.dialect.name == "sqlite"  # stored as naive UTC there (models.UTCDateTime)
    now = datetime.now(UTC)

    def stored(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=None) if value is not None and naive else value

    has_own = sa.exists().where(reminders.c.user_id == users.c.id, reminders.c.kind != "weekly")
    has_weekly = sa.exists().where(reminders.c.user_id == users.c.id, reminders.c.kind == "weekly")
    last_id = -1
    while True:
        # A page of users at a time (keyset pagination), so memory stays flat.
        rows = bind.execute(
            sa.select(users.c.id, users.c.timezone, preferences.c.reminders_paused)
            .outerjoin(preferences, preferences.c.user_id == users.c.id)
            .where(users.c.id > last_id, users.c.status == "active", has_own, ~has_weekly)
            .order_by(users.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        bind.execute(
            reminders.insert(),
            [
                {
                    "user_id": user_id,
                    "kind": "weekly",
                    "label": "Weekly summary",
                    "rule": "19:00|sun",
                    "paused": False,
                    "next_due_at": stored(
                        None if all_paused else _next_sunday_evening(now, _zone(zone_key))
                    ),
                    "created_at": stored(now),
                    "updated_at": stored(now),
                }
                for user_id, zone_key, all_paused in rows
            ],
        )


def downgrade() -> None:
    # Their history goes with them (the occurrences' foreign key cascades).
    op.execute(reminders.delete().where(reminders.c.kind == "weekly"))
