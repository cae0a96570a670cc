"""Database tables. Every datetime is timezone-aware UTC, on SQLite as on PostgreSQL."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Store aware datetimes as UTC; hand back aware UTC datetimes.

    SQLite has no timezone type and returns naive values; without this, naive and
    aware datetimes would mix and comparisons would raise at run time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# 64-bit ids: at a million users, 32-bit occurrence ids would run out in about three years.
# SQLite's rowid is 64-bit already, and only a column declared INTEGER is that rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Bounds the process ids kept in claims and heartbeats.
INSTANCE_LENGTH = 64


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UserStatus(StrEnum):
    """Whether we may message a user."""

    ACTIVE = "active"
    BLOCKED = "blocked"  # Telegram said 403 or chat not found; their next /start reactivates.
    DELETED = "deleted"  # the user asked us to forget them.


class User(SQLModel, table=True):
    """A Telegram user who has talked to the bot (private chats only)."""

    __tablename__ = "users"

    id: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    first_name: str = Field(default="", sa_type=String(128))
    language_code: str | None = Field(default=None, sa_type=String(16))
    timezone: str | None = Field(default=None, sa_type=String(64))
    status: str = Field(default=UserStatus.ACTIVE.value, sa_type=String(16), index=True)
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)


class UserPreferences(SQLModel, table=True):
    """Per-user choices that are not identity: quiet hours and a global pause."""

    __tablename__ = "user_preferences"

    user_id: int = Field(
        sa_type=BigInteger,
        sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")],
        primary_key=True,
        sa_column_kwargs={"autoincrement": False},
    )
    quiet_start: str | None = Field(default=None, sa_type=String(5))
    quiet_end: str | None = Field(default=None, sa_type=String(5))
    reminders_paused: bool = Field(default=False)
    # Operators' announcements (broadcasts); every one carries a button to turn them off.
    announcements: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ReminderKind(StrEnum):
    """What a reminder is for; custom ones carry the user's own label."""

    SUNSCREEN = "sunscreen"
    MOISTURIZE = "moisturize"
    EXFOLIATE = "exfoliate"
    CUSTOM = "custom"
    # Hidden from the user's list of reminders: the weekly progress summary, scheduled and
    # sent by the reminder engine like any reminder (its switch is `paused`).
    WEEKLY = "weekly"


# The kinds a user has at most one of: the weekly summary and outdoor mode's "reapply".
HIDDEN_KINDS_SQL = "kind IN ('weekly', 'reapply')"


class Reminder(SQLModel, table=True):
    """One recurring reminder: a rule in the user's local time and its next occurrence.

    `next_due_at` is NULL exactly when nothing should fire: the reminder or all of the
    user's reminders are paused, or the user blocked the bot. The dispatcher looks only
    at this indexed column, so a million stored reminders cost nothing at start-up.
    """

    __tablename__ = "reminders"
    __table_args__ = (
        # At most one of each hidden kind per user, even when two processes each find none
        # and make one at the same moment (progress_store.py and outdoors.py catch that).
        Index(
            "uq_reminders_user_hidden_kind",
            "user_id",
            "kind",
            unique=True,
            sqlite_where=text(HIDDEN_KINDS_SQL),
            postgresql_where=text(HIDDEN_KINDS_SQL),
        ),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    user_id: int = Field(
        sa_type=BigInteger,
        sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")],
        index=True,
    )
    kind: str = Field(sa_type=String(16))
    label: str = Field(sa_type=String(64))
    rule: str = Field(sa_type=String(200))
    paused: bool = Field(default=False)
    next_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class OccurrenceStatus(StrEnum):
    """Where one occurrence of a reminder stands."""

    PENDING = "pending"  # due at due_at, not sent yet
    SENDING = "sending"  # claimed by a dispatcher; the claim expires after a lease
    SENT = "sent"  # Telegram accepted it; waiting for the user
    SNOOZED = "snoozed"  # the user asked again later; a follow-up is due at due_at
    DONE = "done"
    SKIPPED = "skipped"
    MISSED = "missed"  # not sent: the bot was down for longer than the grace window
    FAILED = "failed"  # Telegram refused for good (blocked, chat gone, retries used up)


class Occurrence(SQLModel, table=True):
    """One firing of a reminder, unique per (reminder, scheduled time), and its outcome."""

    __tablename__ = "occurrences"
    __table_args__ = (
        UniqueConstraint("reminder_id", "scheduled_for", name="uq_occurrences_reminder_time"),
        Index("ix_occurrences_status_due_at", "status", "due_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    reminder_id: int = Field(
        sa_type=BigId, sa_column_args=[ForeignKey("reminders.id", ondelete="CASCADE")]
    )
    user_id: int = Field(sa_type=BigInteger, index=True)
    scheduled_for: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default=OccurrenceStatus.PENDING.value, sa_type=String(16))
    late: bool = Field(default=False)
    snoozes: int = Field(default=0)
    attempts: int = Field(default=0)
    # Give up (record it missed) after this; NULL: `due_at` plus the grace window. Set once a
    # send has failed, so retries that move `due_at` never move the deadline.
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, sa_type=String(INSTANCE_LENGTH))
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message_id: int | None = Field(default=None, sa_type=BigInteger)
    outcome_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str | None = Field(default=None, sa_type=String(200))


class DispatcherHeartbeat(SQLModel, table=True):
    """A running bot process, so processes sharing a database can share Telegram's rate."""

    __tablename__ = "dispatchers"

    instance: str = Field(sa_type=String(INSTANCE_LENGTH), primary_key=True)
    seen_at: datetime = Field(sa_type=UTCDateTime)


class BroadcastStatus(StrEnum):
    """Where a broadcast stands."""

    DRAFT = "draft"  # previewed; nothing recorded for users yet
    RUNNING = "running"  # recipients recorded; the bots are sending
    PAUSED = "paused"  # recipients recorded; nothing is sent until resumed
    CANCELLED = "cancelled"  # stopped for good; unsent recipients are skipped
    DONE = "done"  # every recipient has an outcome


class Broadcast(SQLModel, table=True):
    """An operator's announcement: what to send, to whom, when, and how it went."""

    __tablename__ = "broadcasts"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    status: str = Field(default=BroadcastStatus.DRAFT.value, sa_type=String(16), index=True)
    # "text" (`text` is Telegram HTML), "snippet" (a guide snippet by id, with a button to
    # open it), "snippets" (`text` with a button for each of `snippet_ids`), or "copy"
    # (the operator's own message, copied as it is).
    body: str = Field(sa_type=String(16))
    text: str | None = Field(default=None, sa_type=Text)
    snippet_id: str | None = Field(default=None, sa_type=String(32))
    # A "snippets" body (/whatsnew): `text` above buttons opening these, comma-separated.
    snippet_ids: str | None = Field(default=None, sa_type=Text)
    source_chat_id: int | None = Field(default=None, sa_type=BigInteger)
    source_message_id: int | None = Field(default=None, sa_type=BigInteger)
    # "all", "kind:<reminder kind>" or "active:<days>"; see broadcast.Audience.
    audience: str = Field(default="all", sa_type=String(32))
    # Send at this local time ("HH:MM") in each user's zone; NULL: at once.
    local_time: str | None = Field(default=None, sa_type=String(5))
    created_by: int = Field(sa_type=BigInteger)  # an operator's user id; 0 for the command line
    created_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    recipients: int = Field(default=0)
    # Where the operator watches it: one message, edited in place.
    progress_chat_id: int | None = Field(default=None, sa_type=BigInteger)
    progress_message_id: int | None = Field(default=None, sa_type=BigInteger)
    progress_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeliveryStatus(StrEnum):
    """Where one recipient of a broadcast stands."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a bot process; the claim expires after a lease
    SENT = "sent"
    BLOCKED = "blocked"  # 403 or chat not found: the user is marked blocked too
    FAILED = "failed"  # refused for good, or retried until the broadcast's deadline
    SKIPPED = "skipped"  # cancelled, or the user left or turned announcements off since


class Delivery(SQLModel, table=True):
    """One recipient of one broadcast, recorded before the first send, and its outcome."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "user_id", name="uq_deliveries_broadcast_user"),
        Index("ix_deliveries_status_due_at", "status", "due_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    broadcast_id: int = Field(
        sa_type=BigId, sa_column_args=[ForeignKey("broadcasts.id", ondelete="CASCADE")]
    )
    user_id: int = Field(sa_type=BigInteger, index=True)
    status: str = Field(default=DeliveryStatus.PENDING.value, sa_type=String(16))
    due_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    claimed_by: str | None = Field(default=None, sa_type=String(INSTANCE_LENGTH))
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message_id: int | None = Field(default=None, sa_type=BigInteger)
    error: str | None = Field(default=None, sa_type=String(200))


class ContentVersion(SQLModel, table=True):
    """One published version of the guide: what users see, until the next one."""

    __tablename__ = "content_versions"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    # 1, 2, 3...: unique, so two publishers at once cannot both take the next number.
    number: int = Field(sa_type=Integer, unique=True, index=True)
    # SHA-256 of the normalised files (see publishing.fingerprint).
    fingerprint: str = Field(sa_type=String(64), index=True)
    published_by: str = Field(sa_type=String(128))
    published_at: datetime = Field(sa_type=UTCDateTime)
    # JSON: added, changed and removed snippet ids, their titles, changed tip kinds.
    changes: str = Field(sa_type=Text)


class ContentFile(SQLModel, table=True):
    """One file of a published version, as its normalised text: enough to rebuild it."""

    __tablename__ = "content_files"
    __table_args__ = (UniqueConstraint("version_id", "path", name="uq_content_files_version_path"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    version_id: int = Field(
        sa_type=BigId, sa_column_args=[ForeignKey("content_versions.id", ondelete="CASCADE")]
    )
    path: str = Field(sa_type=String(128))  # relative to the content folder: "x.md", "tips/y.md"
    snippet_id: str | None = Field(default=None, sa_type=String(32))  # None for tip files
    title: str | None = Field(default=None, sa_type=String(64))
    source: str = Field(sa_type=Text)


class UvLocation(SQLModel, table=True):
    """Where a user wants UV forecasts for, kept only with their consent.

    Rounded to 0.1° (about 10 km) before it is stored: enough for a UV forecast, too
    coarse to find a home.
    """

    __tablename__ = "uv_locations"

    user_id: int = Field(
        sa_type=BigInteger,
        sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")],
        primary_key=True,
        sa_column_kwargs={"autoincrement": False},
    )
    latitude: float
    longitude: float
    updated_at: datetime = Field(sa_type=UTCDateTime)
