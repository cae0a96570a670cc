"""The operators' overview: users, reminders, today's outcomes, content and broadcasts.

Pure queries into one dataclass, and its rendering as plain text (`miliabot stats` prints
it; `/stats` sends it escaped). The content version is a label handed in by the caller,
so whichever way content is versioned, this module does not need to know.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final

from sqlalchemy import ColumnElement, Integer, Table, and_, case, func, select
from sqlalchemy.engine import Connection

from miliabot_tg import broadcasts as store
from miliabot_tg.broadcasts import PREFERENCES, REMINDERS, USERS
from miliabot_tg.content import Guide
from miliabot_tg.models import (
    DispatcherHeartbeat,
    Occurrence,
    OccurrenceStatus,
    ReminderKind,
    UserStatus,
)
from miliabot_tg.reminders.texts.shared import KINDS

OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
HEARTBEATS: Table = DispatcherHeartbeat.__table__  # type: ignore[attr-defined]
# A bot process says it is alive at least every 30 s; three missed beats and it is gone
# (the dispatcher counts processes the same way when it shares out the rate).
ALIVE_WITHIN: Final = timedelta(seconds=90)
RECENT_BROADCASTS: Final = 5
WEEK: Final = timedelta(days=7)
# The weekly progress summary is a hidden reminder: not one of the users' reminders.
USERS_OWN = REMINDERS.c.kind != ReminderKind.WEEKLY.value


@dataclass(frozen=True)
class Outcomes:
    """What became of the reminders scheduled in one UTC day."""

    scheduled: int  # occurrences planned for the day, whatever became of them
    sent: int  # Telegram accepted them (they may be done or snoozed since)
    done: int
    snoozed: int  # snoozed at least once
    skipped: int
    late: int  # sent, but later than due (the bot was behind or down)
    missed: int  # not sent: the bot was down for longer than the grace window
    failed: int  # Telegram refused for good
    pending: int  # not due yet, or being sent


@dataclass(frozen=True)
class BroadcastLine:
    """One recent broadcast, in short."""

    broadcast_id: int
    status: str
    audience: str
    created_at: datetime
    recipients: int
    sent: int
    blocked: int
    failed: int


@dataclass(frozen=True)
class Stats:
    """Everything `/stats` and `miliabot stats` show."""

    at: datetime
    users_active: int
    users_blocked: int
    users_deleted: int  # asked to be forgotten; only the id is kept
    users_new_this_week: int  # first seen in the last 7 days, whatever their status now
    announcements_off: int  # active users who turned announcements off
    reminders: tuple[tuple[str, int], ...]  # (kind, how many), every kind listed
    reminders_paused: int
    today: Outcomes
    content_version: str
    broadcasts: tuple[BroadcastLine, ...]
    bots_running: int  # bot processes that said they were alive lately


def version_label(number: int | None, guide: Guide) -> str:
    """The published version's number, or the content folder's fingerprint before the first."""
    if number is None:
        return f"not published; folder {guide_label(guide)}"
    return f"version {number} ({len(guide.snippets)} snippets)"


def guide_label(guide: Guide) -> str:
    """A short, stable name for the loaded guide: a fingerprint of its snippets and count."""
    digest = hashlib.sha256()
    for snippet in guide.snippets:
        digest.update(f"{snippet.id}\0{snippet.title}\0{snippet.html}\0".encode())
    return f"guide {digest.hexdigest()[:12]} ({len(guide.snippets)} snippets)"


def _users(conn: Connection, now: datetime) -> tuple[dict[str, int], int, int]:
    by_status: dict[str, int] = {
        str(status): int(count)
        for status, count in conn.execute(
            select(USERS.c.status, func.count()).group_by(USERS.c.status)
        ).all()
    }
    new = conn.execute(select(func.count()).where(USERS.c.first_seen >= now - WEEK)).scalar_one()
    off = conn.execute(
        select(func.count())
        .select_from(USERS.join(PREFERENCES, PREFERENCES.c.user_id == USERS.c.id))
        .where(
            USERS.c.status == UserStatus.ACTIVE.value,
            PREFERENCES.c.announcements.is_(False),
        )
    ).scalar_one()
    return by_status, int(new), int(off)


def _reminders(conn: Connection) -> tuple[tuple[tuple[str, int], ...], int]:
    counts: dict[str, int] = {
        str(kind): int(count)
        for kind, count in conn.execute(
            select(REMINDERS.c.kind, func.count()).where(USERS_OWN).group_by(REMINDERS.c.kind)
        ).all()
    }
    paused = conn.execute(
        select(func.count()).where(REMINDERS.c.paused.is_(True), USERS_OWN)
    ).scalar_one()
    kinds = [*KINDS, *sorted(set(counts) - set(KINDS))]
    return tuple((kind, counts.get(kind, 0)) for kind in kinds), int(paused)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows meet the condition (0, not NULL, when there are none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


def today_outcomes(conn: Connection, now: datetime) -> Outcomes:
    """What became of the reminder occurrences scheduled in `now`'s UTC day."""
    start = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    o = OCCURRENCES.c
    status = o.status
    row = conn.execute(
        select(
            func.count(),
            _count(o.sent_at.is_not(None)),
            _count(status == OccurrenceStatus.DONE.value),
            _count(o.snoozes > 0),
            _count(status == OccurrenceStatus.SKIPPED.value),
            _count(and_(o.late.is_(True), o.sent_at.is_not(None))),
            _count(status == OccurrenceStatus.MISSED.value),
            _count(status == OccurrenceStatus.FAILED.value),
            _count(status.in_([OccurrenceStatus.PENDING.value, OccurrenceStatus.SENDING.value])),
        ).where(
            o.scheduled_for >= start,
            o.scheduled_for < start + timedelta(days=1),
            o.reminder_id.not_in(select(REMINDERS.c.id).where(~USERS_OWN)),
        )
    ).one()
    return Outcomes(*(int(value) for value in row))


def bots_running(conn: Connection, now: datetime) -> int:
    """How many bot processes on this database said they were alive lately."""
    return int(
        conn.execute(
            select(func.count()).where(HEARTBEATS.c.seen_at >= now - ALIVE_WITHIN)
        ).scalar_one()
    )


def _broadcasts(conn: Connection) -> tuple[BroadcastLine, ...]:
    lines = []
    for row in store.recent(conn, RECENT_BROADCASTS):
        progress = store.progress(conn, row.id)
        assert progress is not None
        lines.append(
            BroadcastLine(
                broadcast_id=row.id,
                status=row.status,
                audience=row.audience,
                created_at=row.created_at,
                recipients=row.recipients,
                sent=progress.sent,
                blocked=progress.blocked,
                failed=progress.failed,
            )
        )
    return tuple(lines)


def collect(conn: Connection, now: datetime, *, content_version: str) -> Stats:
    """Read the overview; `now` is aware UTC and sets "this week" and "today"."""
    by_status, new, off = _users(conn, now)
    reminders, paused = _reminders(conn)
    return Stats(
        at=now,
        users_active=by_status.get(UserStatus.ACTIVE.value, 0),
        users_blocked=by_status.get(UserStatus.BLOCKED.value, 0),
        users_deleted=by_status.get(UserStatus.DELETED.value, 0),
        users_new_this_week=new,
        announcements_off=off,
        reminders=reminders,
        reminders_paused=paused,
        today=today_outcomes(conn, now),
        content_version=content_version,
        broadcasts=_broadcasts(conn),
        bots_running=bots_running(conn, now),
    )


def render(stats: Stats) -> str:
    """The overview as plain text, a few short lines per part (readable on a phone)."""
    t = stats.today
    total = sum(count for _kind, count in stats.reminders)
    kinds = ", ".join(f"{kind} {count}" for kind, count in stats.reminders)
    lines = [
        f"MiliaBot at {stats.at:%Y-%m-%d %H:%M} UTC",
        f"Bot processes running: {stats.bots_running}",
        "",
        f"Users: {stats.users_active} active, {stats.users_blocked} blocked, "
        f"{stats.users_deleted} deleted; {stats.users_new_this_week} new this week",
        f"Announcements off: {stats.announcements_off}",
        f"Reminders: {total} ({kinds}); {stats.reminders_paused} paused",
        "",
        f"Today (UTC): {t.scheduled} reminders due",
        f"  sent {t.sent}, done {t.done}, snoozed {t.snoozed}, skipped {t.skipped}",
        f"  late {t.late}, missed {t.missed}, failed {t.failed}, pending {t.pending}",
        "",
        f"Content: {stats.content_version}",
        "",
    ]
    if not stats.broadcasts:
        lines.append("Broadcasts: none yet")
    else:
        lines.append("Recent broadcasts:")
        lines += [
            f"  #{b.broadcast_id} {b.status}, {b.audience}, {b.created_at:%m-%d %H:%M}: "
            f"sent {b.sent}/{b.recipients}, blocked {b.blocked}, failed {b.failed}"
            for b in stats.broadcasts
        ]
    return "\n".join(lines)
