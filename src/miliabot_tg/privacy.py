"""/mydata: everything stored about a user, sent to them as a JSON file.

What is stored about a person lives in six tables keyed by their Telegram id: `users`,
`user_preferences`, `reminders`, `occurrences` (what became of each reminder sent),
`deliveries` (one row per announcement sent to them) and `uv_locations` (a location kept
for UV forecasts, with their consent); an operator's own broadcasts name them as
`created_by`. The export reads all of them in one read-only transaction, so it is
one consistent picture; `repo.forget_user` deletes the same rows.
"""

import io
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlmodel import Session
from telegram import InputFile, Update
from telegram.ext import Application, CommandHandler, filters

from miliabot_tg import texts
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.models import (
    Broadcast,
    Delivery,
    Occurrence,
    Reminder,
    User,
    UserPreferences,
    UvLocation,
)

USERS: Table = User.__table__  # type: ignore[attr-defined]
PREFERENCES: Table = UserPreferences.__table__  # type: ignore[attr-defined]
REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]
OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
BROADCASTS: Table = Broadcast.__table__  # type: ignore[attr-defined]
LOCATIONS: Table = UvLocation.__table__  # type: ignore[attr-defined]
# Claim bookkeeping says which bot process held a row, nothing about the person.
_INTERNAL = frozenset({"claimed_by", "claimed_at"})


def _rows(conn: Connection, table: Table, where: Any) -> list[dict[str, Any]]:
    rows = conn.execute(select(table).where(where).order_by(*table.primary_key.columns))
    return [{k: v for k, v in row._mapping.items() if k not in _INTERNAL} for row in rows]


def export_user(conn: Connection, user_id: int, now: datetime) -> dict[str, Any]:
    """Everything stored about this user, table by table (empty when nothing is)."""
    users = _rows(conn, USERS, USERS.c.id == user_id)
    preferences = _rows(conn, PREFERENCES, PREFERENCES.c.user_id == user_id)
    broadcasts = _rows(conn, BROADCASTS, BROADCASTS.c.created_by == user_id)
    locations = _rows(conn, LOCATIONS, LOCATIONS.c.user_id == user_id)
    return {
        "exported_at": now,
        "telegram_user_id": user_id,
        "user": users[0] if users else None,
        "preferences": preferences[0] if preferences else None,
        "reminders": _rows(conn, REMINDERS, REMINDERS.c.user_id == user_id),
        "reminder_history": _rows(conn, OCCURRENCES, OCCURRENCES.c.user_id == user_id),
        "announcements_received": _rows(conn, DELIVERIES, DELIVERIES.c.user_id == user_id),
        # Only for operators: the broadcasts they wrote.
        **({"broadcasts_created": broadcasts} if broadcasts else {}),
        # Kept only when they said yes to UV forecasts, rounded to 0.1°.
        "location": locations[0] if locations else None,
        "not_stored": texts.NOT_STORED,
    }


def to_json(export: dict[str, Any]) -> bytes:
    """The export as readable UTF-8 JSON; datetimes in ISO 8601 with their UTC offset."""

    def plain(value: object) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return json.dumps(export, indent=2, ensure_ascii=False, default=plain).encode()


class PrivacyHandlers:
    """/mydata."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /mydata, before the unknown-command catch-all."""
        private = filters.ChatType.PRIVATE
        app.add_handler(CommandHandler("mydata", self.mydata, filters=private))

    async def mydata(self, update: Update, context: Context) -> None:
        """Send the user a JSON file with everything stored about them."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        now = self.deps.clock()

        def read(session: Session) -> dict[str, Any]:
            return export_user(session.connection(), user.id, now)

        data = to_json(await self.deps.read(user.id, read))
        await message.reply_document(
            InputFile(io.BytesIO(data), filename=f"miliabot-data-{user.id}.json"),
            caption=texts.MYDATA_CAPTION,
        )
