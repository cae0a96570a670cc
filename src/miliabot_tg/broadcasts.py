"""Operators' broadcasts in the database: audiences, drafts, recipients and progress.

Nothing here talks to Telegram. A broadcast is a draft until it is started; starting it
records every recipient (one `deliveries` row each, with the moment it is due in that
user's own time) before anything is sent, so a crash at any point loses no one and a
restart resends no one recorded as sent. The bots' broadcaster (`broadcaster.py`) then
claims and sends due deliveries like reminders.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import Engine, Table, exists, func, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from miliabot_tg.models import (
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Reminder,
    User,
    UserPreferences,
    UserStatus,
)
from miliabot_tg.schedule import (
    DAILY,
    QuietHours,
    Rule,
    ascii_digits,
    defer_out_of_quiet,
    next_occurrence,
)
from miliabot_tg.timezones import zone_from_key

BROADCASTS: Table = Broadcast.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]
USERS: Table = User.__table__  # type: ignore[attr-defined]
PREFERENCES: Table = UserPreferences.__table__  # type: ignore[attr-defined]
REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]

# Recipients are read and recorded this many at a time: memory stays flat for any audience.
RECORD_BATCH: Final = 1000
MAX_ACTIVE_DAYS: Final = 3650
OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
_AUDIENCE = re.compile(r"all|kind:(sunscreen|moisturize|exfoliate|custom)|active:([0-9]{1,4})")
_LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class BroadcastError(ValueError):
    """A request about a broadcast that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to; active users with announcements on, always."""

    kind: str | None = None  # only users with a reminder of this kind
    active_days: int | None = None  # only users seen in the last this many days

    @classmethod
    def parse(cls, text: str) -> "Audience":
        """Read ``all``, ``kind:<reminder kind>`` or ``active:<days>``."""
        # Digits in any script, as everywhere people type numbers (schedule.ascii_digits).
        m = _AUDIENCE.fullmatch(ascii_digits(text.strip().lower()))
        if m is None:
            raise BroadcastError(
                "The audience is all, kind:sunscreen|moisturize|exfoliate|custom or active:DAYS."
            )
        if m[2] is not None:
            days = int(m[2])
            if not 1 <= days <= MAX_ACTIVE_DAYS:
                raise BroadcastError(f"Active days run from 1 to {MAX_ACTIVE_DAYS}.")
            return cls(active_days=days)
        return cls(kind=m[1])

    def to_text(self) -> str:
        if self.kind is not None:
            return f"kind:{self.kind}"
        if self.active_days is not None:
            return f"active:{self.active_days}"
        return "all"

    def describe(self) -> str:
        if self.kind is not None:
            return f"users with a {self.kind} reminder"
        if self.active_days is not None:
            return f"users active in the last {self.active_days} days"
        return "all users"


def parse_local_time(text: str) -> str:
    """Check a local sending time such as ``10:00``; return it as stored."""
    m = _LOCAL_TIME.fullmatch(text.strip())
    if m is None:
        raise BroadcastError("A local time looks like 10:00 (24-hour clock).")
    return f"{m[1]}:{m[2]}"


def due_for(
    now: datetime, local_time: str | None, zone_key: str, quiet: QuietHours | None
) -> datetime:
    """When one recipient's message is due: at once, or at the next `local_time` in their zone.

    Either way it waits for the end of the user's quiet hours.
    """
    zone = zone_from_key(zone_key)
    when = now
    if local_time is not None:
        hour, minute = (int(part) for part in local_time.split(":"))
        # The first moment at or after now that the user's clock shows it (today or tomorrow).
        when = next_occurrence(Rule((time(hour, minute),), DAILY), zone, now - timedelta(minutes=1))
        when = max(when, now)
    return defer_out_of_quiet(when, quiet, zone)


def _audience_filter(audience: Audience, now: datetime) -> list[Any]:
    conditions: list[Any] = [
        USERS.c.status == UserStatus.ACTIVE.value,
        or_(PREFERENCES.c.announcements.is_(None), PREFERENCES.c.announcements == true()),
    ]
    if audience.kind is not None:
        conditions.append(
            exists().where(REMINDERS.c.user_id == USERS.c.id, REMINDERS.c.kind == audience.kind)
        )
    if audience.active_days is not None:
        conditions.append(USERS.c.last_seen >= now - timedelta(days=audience.active_days))
    return conditions


def count_audience(conn: Connection, audience: Audience, now: datetime) -> int:
    """How many users the audience holds right now."""
    query = (
        select(func.count())
        .select_from(USERS.outerjoin(PREFERENCES, PREFERENCES.c.user_id == USERS.c.id))
        .where(*_audience_filter(audience, now))
    )
    return int(conn.execute(query).scalar_one())


def _audience_page(
    conn: Connection, audience: Audience, now: datetime, after: int | None, size: int
) -> list[Any]:
    """The next page of the audience's users, by id, with their zone and quiet hours."""
    query = (
        select(USERS.c.id, USERS.c.timezone, PREFERENCES.c.quiet_start, PREFERENCES.c.quiet_end)
        .select_from(USERS.outerjoin(PREFERENCES, PREFERENCES.c.user_id == USERS.c.id))
        .where(*_audience_filter(audience, now))
        .order_by(USERS.c.id)
        .limit(size)
    )
    if after is not None:
        query = query.where(USERS.c.id > after)
    return list(conn.execute(query).all())


def create_draft(
    conn: Connection,
    *,
    created_by: int,
    now: datetime,
    text: str | None = None,
    snippet_id: str | None = None,
    source: tuple[int, int] | None = None,
    audience: Audience | None = None,
    local_time: str | None = None,
    snippet_ids: Sequence[str] = (),
) -> int:
    """Record a draft broadcast with exactly one body; return its id.

    A text with `snippet_ids` is a "snippets" body: the text above a button for each.
    """
    bodies = [b for b, v in (("text", text), ("snippet", snippet_id), ("copy", source)) if v]
    if snippet_ids:
        bodies = ["snippets"] if bodies == ["text"] else [*bodies, "snippets"]
    if len(bodies) != 1:
        raise BroadcastError("A broadcast needs exactly one of a text, a snippet or a message.")
    values = {
        "status": BroadcastStatus.DRAFT.value,
        "body": bodies[0],
        "text": text,
        "snippet_id": snippet_id,
        "snippet_ids": ",".join(snippet_ids) or None,
        "source_chat_id": source[0] if source else None,
        "source_message_id": source[1] if source else None,
        "audience": (audience or Audience()).to_text(),
        "local_time": local_time,
        "created_by": created_by,
        "created_at": now,
        "recipients": 0,
    }
    key = conn.execute(BROADCASTS.insert().values(**values)).inserted_primary_key
    assert key is not None
    return int(key[0])


def get(conn: Connection, broadcast_id: int) -> Any | None:
    """The broadcast's row, or None."""
    return conn.execute(select(BROADCASTS).where(BROADCASTS.c.id == broadcast_id)).first()


def set_audience(conn: Connection, broadcast_id: int, audience: Audience) -> bool:
    """Change a draft's audience; False when it is no longer a draft."""
    return _change(conn, broadcast_id, (BroadcastStatus.DRAFT,), audience=audience.to_text())


def set_local_time(conn: Connection, broadcast_id: int, local_time: str | None) -> bool:
    """Change a draft's timing; False when it is no longer a draft."""
    return _change(conn, broadcast_id, (BroadcastStatus.DRAFT,), local_time=local_time)


def set_progress_message(
    conn: Connection, broadcast_id: int, chat_id: int, message_id: int
) -> None:
    """Remember the operator's message that shows this broadcast's progress."""
    conn.execute(
        update(BROADCASTS)
        .where(BROADCASTS.c.id == broadcast_id)
        .values(progress_chat_id=chat_id, progress_message_id=message_id)
    )


def start(engine: Engine, broadcast_id: int, now: datetime, default_tz: str) -> int:
    """Record every recipient of a draft, then let the bots send it; return how many.

    Recipients are recorded in small transactions, idempotently: if this is interrupted,
    starting again records the rest. Only once all are recorded does the broadcast run.
    """
    with engine.begin() as conn:
        row = get(conn, broadcast_id)
    if row is None:
        raise BroadcastError(f"There is no broadcast {broadcast_id}.")
    if row.status != BroadcastStatus.DRAFT.value:
        raise BroadcastError(f"Broadcast {broadcast_id} is {row.status}, not a draft.")
    audience = Audience.parse(row.audience)
    after: int | None = None
    while True:
        # One short transaction per page, reading and recording it: never a long lock.
        with engine.begin() as conn:
            page = _audience_page(conn, audience, now, after, RECORD_BATCH)
            _insert_deliveries(
                conn, [_delivery(broadcast_id, row.local_time, u, now, default_tz) for u in page]
            )
        if len(page) < RECORD_BATCH:
            break
        after = page[-1].id
    with engine.begin() as conn:
        recorded = conn.execute(
            select(func.count()).where(DELIVERIES.c.broadcast_id == broadcast_id)
        ).scalar_one()
        started = _change(
            conn,
            broadcast_id,
            (BroadcastStatus.DRAFT,),
            status=BroadcastStatus.RUNNING.value,
            started_at=now,
            recipients=recorded,
        )
        if not started:
            raise BroadcastError(f"Broadcast {broadcast_id} was started or cancelled meanwhile.")
        if recorded == 0:  # nobody to send to: done at once
            finish_done(conn, [broadcast_id], now)
    return int(recorded)


def _delivery(
    broadcast_id: int, local_time: str | None, user: Any, now: datetime, default_tz: str
) -> dict[str, Any]:
    return {
        "broadcast_id": broadcast_id,
        "user_id": user.id,
        "status": DeliveryStatus.PENDING.value,
        "due_at": due_for(now, local_time, user.timezone or default_tz, _quiet(user)),
        "attempts": 0,
    }


def _quiet(user: Any) -> QuietHours | None:
    if user.quiet_start and user.quiet_end:
        return QuietHours.from_text(f"{user.quiet_start}-{user.quiet_end}")
    return None


def _insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(DELIVERIES).on_conflict_do_nothing(index_elements=["broadcast_id", "user_id"]),
        rows,
    )


def _change(
    conn: Connection, broadcast_id: int, allowed: tuple[BroadcastStatus, ...], **values: Any
) -> bool:
    result = conn.execute(
        update(BROADCASTS)
        .where(BROADCASTS.c.id == broadcast_id, BROADCASTS.c.status.in_([s.value for s in allowed]))
        .values(**values)
    )
    return bool(result.rowcount)


def pause(conn: Connection, broadcast_id: int) -> bool:
    """Stop sending a running broadcast until it is resumed."""
    return _change(
        conn, broadcast_id, (BroadcastStatus.RUNNING,), status=BroadcastStatus.PAUSED.value
    )


def resume(conn: Connection, broadcast_id: int) -> bool:
    """Carry on sending a paused broadcast where it stopped."""
    return _change(
        conn, broadcast_id, (BroadcastStatus.PAUSED,), status=BroadcastStatus.RUNNING.value
    )


def cancel(conn: Connection, broadcast_id: int, now: datetime) -> bool:
    """Stop a broadcast for good; recipients not yet sent to are skipped."""
    cancelled = _change(
        conn,
        broadcast_id,
        (BroadcastStatus.DRAFT, BroadcastStatus.RUNNING, BroadcastStatus.PAUSED),
        status=BroadcastStatus.CANCELLED.value,
        finished_at=now,
    )
    if cancelled:
        conn.execute(
            update(DELIVERIES)
            .where(
                DELIVERIES.c.broadcast_id == broadcast_id,
                DELIVERIES.c.status == DeliveryStatus.PENDING.value,
            )
            .values(status=DeliveryStatus.SKIPPED.value, error="cancelled")
        )
    return cancelled


def finish_done(conn: Connection, broadcast_ids: list[int], now: datetime) -> list[int]:
    """Mark running broadcasts with no recipient left to send to as done; return those."""
    if not broadcast_ids:
        return []
    still_open = exists().where(
        DELIVERIES.c.broadcast_id == BROADCASTS.c.id, DELIVERIES.c.status.in_(OPEN)
    )
    result = conn.execute(
        update(BROADCASTS)
        .where(
            BROADCASTS.c.id.in_(broadcast_ids),
            BROADCASTS.c.status == BroadcastStatus.RUNNING.value,
            ~still_open,
        )
        .values(status=BroadcastStatus.DONE.value, finished_at=now)
        .returning(BROADCASTS.c.id)
    )
    return list(result.scalars())


@dataclass(frozen=True)
class Progress:
    """How a broadcast is going."""

    broadcast_id: int
    status: str
    recipients: int
    sent: int
    blocked: int
    failed: int
    skipped: int
    started_at: datetime | None

    @property
    def left(self) -> int:
        return max(self.recipients - self.sent - self.blocked - self.failed - self.skipped, 0)

    def seconds_left(self, now: datetime) -> float | None:
        """An estimate from the pace so far; None before anything was sent."""
        done = self.recipients - self.left
        if self.started_at is None or done <= 0 or not self.left:
            return None
        elapsed = (now - self.started_at).total_seconds()
        return elapsed / done * self.left


def progress(conn: Connection, broadcast_id: int) -> Progress | None:
    """Count the broadcast's recipients by outcome."""
    row = get(conn, broadcast_id)
    if row is None:
        return None
    counts: dict[str, int] = dict(
        conn.execute(
            select(DELIVERIES.c.status, func.count())
            .where(DELIVERIES.c.broadcast_id == broadcast_id)
            .group_by(DELIVERIES.c.status)
        ).all()
    )
    return Progress(
        broadcast_id=broadcast_id,
        status=row.status,
        recipients=row.recipients,
        sent=counts.get(DeliveryStatus.SENT.value, 0),
        blocked=counts.get(DeliveryStatus.BLOCKED.value, 0),
        failed=counts.get(DeliveryStatus.FAILED.value, 0),
        skipped=counts.get(DeliveryStatus.SKIPPED.value, 0),
        started_at=row.started_at,
    )


def recent(conn: Connection, limit: int = 10) -> list[Any]:
    """The latest broadcasts, newest first."""
    return list(
        conn.execute(select(BROADCASTS).order_by(BROADCASTS.c.id.desc()).limit(limit)).all()
    )


def take_progress_turn(
    conn: Connection, broadcast_id: int, now: datetime, every: timedelta
) -> bool:
    """Whether this process should update the progress message now (one process does)."""
    result = conn.execute(
        update(BROADCASTS)
        .where(
            BROADCASTS.c.id == broadcast_id,
            or_(BROADCASTS.c.progress_at.is_(None), BROADCASTS.c.progress_at <= now - every),
        )
        .values(progress_at=now)
    )
    return bool(result.rowcount)


def set_announcements(conn: Connection, user_id: int, on: bool, now: datetime) -> bool:
    """Turn a user's announcements on or off; False for an unknown user."""
    if conn.execute(select(USERS.c.id).where(USERS.c.id == user_id)).first() is None:
        return False
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(PREFERENCES).values(user_id=user_id, announcements=on, updated_at=now)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"], set_={"announcements": on, "updated_at": now}
        )
    )
    return True


def running_ids(conn: Connection) -> list[int]:
    """Broadcasts that are sending now."""
    return list(
        conn.execute(
            select(BROADCASTS.c.id).where(BROADCASTS.c.status == BroadcastStatus.RUNNING.value)
        ).scalars()
    )


def next_due(conn: Connection) -> datetime | None:
    """The earliest moment a running broadcast has a recipient due."""
    return conn.execute(
        select(func.min(DELIVERIES.c.due_at))
        .select_from(DELIVERIES.join(BROADCASTS, BROADCASTS.c.id == DELIVERIES.c.broadcast_id))
        .where(
            DELIVERIES.c.status == DeliveryStatus.PENDING.value,
            BROADCASTS.c.status == BroadcastStatus.RUNNING.value,
        )
    ).scalar()
