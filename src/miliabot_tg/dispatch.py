"""The reminder engine: the database is the scheduler.

Each cycle (1) turns reminders whose `next_due_at` has come into occurrence rows, unique
per (reminder, scheduled time), and moves `next_due_at` on by the calendar; (2) claims due
occurrences with one conditional UPDATE (`FOR UPDATE SKIP LOCKED` on PostgreSQL) so two
dispatchers never take the same row; (3) sends them with no transaction open; (4) records
each outcome. Nothing lives only in memory: a restart, or another process, picks up where
this one stopped.

Delivery is at-least-once. Telegram's sendMessage has no idempotency key, so a process
killed after Telegram accepted a message but before the outcome was committed cannot
know it was sent; its claim expires after `lease` and the occurrence is sent again. The
duplicate window is therefore the few milliseconds between Telegram's answer and our
commit, for at most `concurrency` messages in flight; nothing is ever lost.
"""

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import CallbackContext, ExtBot, Job, JobQueue

from miliabot_tg import repo
from miliabot_tg.content import Guide
from miliabot_tg.db import new_session
from miliabot_tg.models import (
    DispatcherHeartbeat,
    Occurrence,
    OccurrenceStatus,
    Reminder,
    User,
    UserPreferences,
    UTCDateTime,
)
from miliabot_tg.pacing import PaceArgs, Priority
from miliabot_tg.reminders.texts import reminder_message, tip_for
from miliabot_tg.schedule import QuietHours, Rule, defer_out_of_quiet, next_occurrence
from miliabot_tg.schedule import occurrences_between as calendar_between
from miliabot_tg.timezones import zone_from_key

log = logging.getLogger(__name__)

REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]
OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
USERS: Table = User.__table__  # type: ignore[attr-defined]
PREFERENCES: Table = UserPreferences.__table__  # type: ignore[attr-defined]
HEARTBEATS: Table = DispatcherHeartbeat.__table__  # type: ignore[attr-defined]

PENDING, SENDING, SENT = (
    OccurrenceStatus.PENDING.value,
    OccurrenceStatus.SENDING.value,
    OccurrenceStatus.SENT.value,
)
MISSED, FAILED = OccurrenceStatus.MISSED.value, OccurrenceStatus.FAILED.value
# A send retried this many times (network faults, 5xx) is given up.
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class DispatchPolicy:
    """How the engine behaves; the defaults are the production ones."""

    grace: timedelta = timedelta(hours=2)  # older missed occurrences are recorded, not sent
    lease: timedelta = timedelta(seconds=60)  # a claim older than this is presumed dead
    late_after: timedelta = timedelta(minutes=1)  # sent later than this counts as late
    batch: int = 500  # rows per transaction
    concurrency: int = 64  # sends in flight at once
    flush_every: int = 16  # outcomes recorded per transaction while a batch is sent
    idle_poll: timedelta = timedelta(seconds=30)  # wake at least this often (other processes)
    heartbeat: timedelta = timedelta(seconds=10)  # how often a process says it is alive


def plan_due(
    due: Sequence[datetime], now: datetime, grace: timedelta
) -> tuple[datetime | None, list[datetime]]:
    """Choose what to send for a reminder's due occurrences, oldest first.

    Policy: occurrences missed by more than `grace` are recorded as missed and never
    sent; of the rest, only the newest is sent (several missed ones collapse into one
    message) and the others are recorded as missed.
    """
    recent = [t for t in due if t >= now - grace]
    send = recent[-1] if recent else None
    return send, [t for t in due if t != send]


def retry_delay(attempts: int) -> timedelta:
    """Back off 5 s, 10 s, 20 s … up to 5 minutes between attempts at a flaky send."""
    return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 300))


@dataclass(frozen=True)
class Claimed:
    """A due occurrence this dispatcher now owns, with what it takes to send it."""

    occurrence_id: int
    user_id: int
    scheduled_for: datetime
    late: bool
    follow_up: bool
    attempts: int
    kind: str
    label: str
    zone: tzinfo


@dataclass(frozen=True)
class Outcome:
    """What happened to one send."""

    claimed: Claimed
    status: str  # SENT, PENDING (try again at retry_at), FAILED, or "blocked"
    message_id: int | None = None
    retry_at: datetime | None = None
    error: str | None = None


class Dispatcher:
    """Claims due occurrences, sends them, and sleeps until the next one is due."""

    def __init__(
        self,
        *,
        bot: ExtBot[Any],
        engine: Engine,
        guide: Guide,
        clock: Callable[[], datetime],
        default_tz: str,
        policy: DispatchPolicy | None = None,
        instance: str | None = None,
        on_share: Callable[[int], None] = lambda _processes: None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine = engine
        self.guide = guide
        self.clock = clock
        self.default_tz = default_tz
        self.policy = policy or DispatchPolicy()
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._dialect = engine.dialect.name
        self._job_queue: JobQueue[Any] | None = None
        self._job: Job[Any] | None = None
        self._wake_at: datetime | None = None
        self._running = False
        self._again = False
        self.bot = bot
        # Told how many bot processes share the database, so each can take its part of
        # Telegram's global rate.
        self.on_share = on_share
        self._last_heartbeat: datetime | None = None
        # False once the application is stopping: finish the batch in hand, take no more,
        # so a shutdown with a large backlog is quick and the rest waits in the database.
        self.keep_going = keep_going

    # --- waking up -------------------------------------------------------------------------

    def start(self, job_queue: "JobQueue[Any]") -> None:
        """Begin dispatching through PTB's JobQueue, with a first cycle right away."""
        self._job_queue = job_queue
        self._schedule(self.clock())

    def wake(self, when: datetime | None) -> None:
        """Make sure a cycle runs by `when` (a reminder was added, edited or snoozed)."""
        if when is None or self._job_queue is None:
            return
        if self._running and when <= self.clock():
            # Due already: run again after this cycle. Later times are found in the
            # database when the cycle ends and plans its next wake-up.
            self._again = True
        if self._wake_at is None or when < self._wake_at:
            self._schedule(when)

    def _schedule(self, when: datetime) -> None:
        assert self._job_queue is not None
        if self._job is not None:
            self._job.schedule_removal()
        delay = max((when - self.clock()).total_seconds(), 0.0)
        # misfire_grace_time=None: a wake-up that runs late must still run, never be dropped.
        self._job = self._job_queue.run_once(
            self._on_wake, when=delay, name="dispatch", job_kwargs={"misfire_grace_time": None}
        )
        self._wake_at = when

    async def _on_wake(self, _context: CallbackContext[Any, Any, Any, Any]) -> None:
        self._job = None
        self._wake_at = None
        if self._running:
            self._again = True
            return
        self._running = True
        try:
            while True:
                self._again = False
                await self.run_cycle()
                if not self._again:
                    break
        except Exception:
            log.exception("dispatch cycle failed; trying again shortly")
            self._running = False
            self._schedule(self.clock() + timedelta(seconds=5))
            return
        self._running = False
        now = self.clock()
        next_due = await asyncio.to_thread(self.next_due)
        wake_at = now + self.policy.idle_poll
        if next_due is not None and next_due < wake_at:
            wake_at = next_due
        if self._wake_at is None or wake_at < self._wake_at:
            self._schedule(wake_at)

    # --- one cycle ---------------------------------------------------------------------------

    async def run_cycle(self) -> int:
        """Do everything that is due now; return how many messages were attempted."""
        attempted = 0
        now = self.clock()
        if self._last_heartbeat is None or now - self._last_heartbeat >= self.policy.heartbeat:
            self._last_heartbeat = now
            self.on_share(await asyncio.to_thread(self.heartbeat, now))
        await asyncio.to_thread(self.sweep, now)
        while True:
            made = await asyncio.to_thread(self.materialize, now)
            claimed = await asyncio.to_thread(self.claim, now)
            if claimed:
                await self._send_all(claimed)
                attempted += len(claimed)
            if made < self.policy.batch and len(claimed) < self.policy.batch:
                if attempted:
                    log.info("dispatched %d reminder message(s)", attempted)
                return attempted
            if not self.keep_going():
                log.info("stopping with work left in the database for the next start")
                return attempted
            now = self.clock()

    def next_due(self) -> datetime | None:
        """Return the earliest time anything is due, from the database.

        That includes the moment another dispatcher's claim expires, so work left behind
        by a crashed process is taken over as soon as its lease runs out.
        """
        occurrences = OCCURRENCES.c
        with self.engine.connect() as conn:
            reminder = conn.execute(select(func.min(REMINDERS.c.next_due_at))).scalar()
            occurrence = conn.execute(
                select(func.min(occurrences.due_at)).where(occurrences.status.in_(repo.CLAIMABLE))
            ).scalar()
            claim = conn.execute(
                select(func.min(occurrences.claimed_at)).where(occurrences.status == SENDING)
            ).scalar()
        found = [t for t in (reminder, occurrence) if t is not None]
        if claim is not None:
            found.append(claim + self.policy.lease)
        return min(found) if found else None

    def heartbeat(self, now: datetime) -> int:
        """Record that this process is alive; return how many processes are."""
        alive_since = now - 3 * max(self.policy.idle_poll, self.policy.heartbeat)
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = dialect_insert(HEARTBEATS).values(instance=self.instance, seen_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=["instance"], set_={"seen_at": statement.excluded.seen_at}
        )
        with self.engine.begin() as conn:
            conn.execute(statement)
            # Forget processes that stopped without saying goodbye.
            conn.execute(delete(HEARTBEATS).where(HEARTBEATS.c.seen_at < now - timedelta(days=1)))
            alive = conn.execute(
                select(func.count()).where(HEARTBEATS.c.seen_at >= alive_since)
            ).scalar_one()
        return max(int(alive), 1)

    def leave(self) -> None:
        """Say goodbye, so the processes left take over this one's share at once."""
        with self.engine.begin() as conn:
            conn.execute(delete(HEARTBEATS).where(HEARTBEATS.c.instance == self.instance))

    def sweep(self, now: datetime) -> None:
        """Release claims of dead dispatchers; give up on occurrences past the grace window."""
        with self.engine.begin() as conn:
            released = conn.execute(
                update(OCCURRENCES)
                .where(
                    OCCURRENCES.c.status == SENDING,
                    OCCURRENCES.c.claimed_at < now - self.policy.lease,
                )
                .values(status=PENDING, claimed_by=None)
            ).rowcount
            expired = conn.execute(
                update(OCCURRENCES)
                .where(
                    OCCURRENCES.c.status.in_(repo.CLAIMABLE),
                    OCCURRENCES.c.due_at < now - self.policy.grace,
                )
                .values(status=MISSED, outcome_at=now)
            ).rowcount
        if released or expired:
            log.info("released %d stale claim(s); %d occurrence(s) missed", released, expired)

    def materialize(self, now: datetime) -> int:
        """Turn due reminders into occurrences and move each reminder to its next time."""
        query = (
            select(
                REMINDERS.c.id,
                REMINDERS.c.user_id,
                REMINDERS.c.rule,
                REMINDERS.c.next_due_at,
                USERS.c.timezone,
                PREFERENCES.c.quiet_start,
                PREFERENCES.c.quiet_end,
            )
            .join(USERS, USERS.c.id == REMINDERS.c.user_id)
            .outerjoin(PREFERENCES, PREFERENCES.c.user_id == REMINDERS.c.user_id)
            .where(REMINDERS.c.next_due_at <= now)
            .order_by(REMINDERS.c.next_due_at)
            .limit(self.policy.batch)
        )
        if self._dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=REMINDERS)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return 0
            # At a busy minute thousands of reminders share a rule, a zone and a due time
            # ("08:00 daily, Europe/Berlin"): do their calendar work once.
            calendar: dict[tuple[str, str | None, datetime], tuple[list[datetime], datetime]] = {}
            occurrences: list[dict[str, Any]] = []
            moves: list[dict[str, Any]] = []
            for row in rows:
                key = (row.rule, row.timezone, row.next_due_at)
                if key not in calendar:
                    calendar[key] = self._calendar(row.rule, row.timezone, row.next_due_at, now)
                due, following = calendar[key]
                occurrences += self._occurrences_for(row, due, now)
                moves.append({"rid": row.id, "old": row.next_due_at, "new": following})
            self._move_reminders(conn, moves)
            self._insert_occurrences(conn, occurrences)
        return len(rows)

    def _calendar(
        self, rule_text: str, zone_key: str | None, first: datetime, now: datetime
    ) -> tuple[list[datetime], datetime]:
        """Return the occurrences due from `first` up to now, and the one after now."""
        rule, zone = Rule.from_text(rule_text), self._zone(zone_key)
        due = [first, *calendar_between(rule, zone, first, now)]
        return due, next_occurrence(rule, zone, now)

    def _occurrences_for(
        self, row: Any, due: list[datetime], now: datetime
    ) -> list[dict[str, Any]]:
        send, missed = plan_due(due, now, self.policy.grace)
        quiet = (
            QuietHours.from_text(f"{row.quiet_start}-{row.quiet_end}")
            if row.quiet_start and row.quiet_end
            else None
        )
        common = {"reminder_id": row.id, "user_id": row.user_id, "snoozes": 0, "attempts": 0}
        rows = [
            {**common, "scheduled_for": t, "due_at": t, "status": MISSED, "late": False}
            | {"outcome_at": now}
            for t in missed
        ]
        if send is not None:
            due_at = (
                send if quiet is None else defer_out_of_quiet(send, quiet, self._zone(row.timezone))
            )
            rows.append(
                {
                    **common,
                    "scheduled_for": send,
                    "due_at": due_at,
                    "status": PENDING,
                    "late": send < now - self.policy.late_after,
                    "outcome_at": None,
                }
            )
        return rows

    def _move_reminders(self, conn: Connection, moves: list[dict[str, Any]]) -> None:
        # Conditional on the value we read: if another dispatcher moved the reminder in the
        # meantime (SQLite has no SKIP LOCKED), its occurrence keys collide and ours are dropped.
        statement = (
            update(REMINDERS)
            .where(
                REMINDERS.c.id == _bind("rid"),
                REMINDERS.c.next_due_at == _bind("old", UTCDateTime()),
            )
            .values(next_due_at=_bind("new", UTCDateTime()))
        )
        conn.execute(statement, moves)

    def _insert_occurrences(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect_insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = dialect_insert(OCCURRENCES).on_conflict_do_nothing(
            index_elements=["reminder_id", "scheduled_for"]
        )
        conn.execute(statement, rows)

    def claim(self, now: datetime) -> list[Claimed]:
        """Take ownership of due occurrences, atomically, and load what sending needs."""
        due = (
            select(OCCURRENCES.c.id)
            .where(OCCURRENCES.c.status.in_(repo.CLAIMABLE), OCCURRENCES.c.due_at <= now)
            .order_by(OCCURRENCES.c.due_at)
            .limit(self.policy.batch)
        )
        if self._dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (
            update(OCCURRENCES)
            .where(OCCURRENCES.c.id.in_(due.scalar_subquery()))
            .values(
                status=SENDING,
                claimed_by=self.instance,
                claimed_at=now,
                attempts=OCCURRENCES.c.attempts + 1,
            )
            .returning(
                OCCURRENCES.c.id,
                OCCURRENCES.c.reminder_id,
                OCCURRENCES.c.user_id,
                OCCURRENCES.c.scheduled_for,
                OCCURRENCES.c.late,
                OCCURRENCES.c.snoozes,
                OCCURRENCES.c.attempts,
            )
        )
        with self.engine.begin() as conn:
            taken = conn.execute(statement).all()
            if not taken:
                return []
            details = {
                row.id: row
                for row in conn.execute(
                    select(REMINDERS.c.id, REMINDERS.c.kind, REMINDERS.c.label, USERS.c.timezone)
                    .join(USERS, USERS.c.id == REMINDERS.c.user_id)
                    .where(REMINDERS.c.id.in_({row.reminder_id for row in taken}))
                )
            }
        return [
            Claimed(
                occurrence_id=row.id,
                user_id=row.user_id,
                scheduled_for=row.scheduled_for,
                late=row.late,
                follow_up=row.snoozes > 0,
                attempts=row.attempts,
                kind=details[row.reminder_id].kind,
                label=details[row.reminder_id].label,
                zone=self._zone(details[row.reminder_id].timezone),
            )
            for row in sorted(taken, key=lambda r: r.scheduled_for)
        ]

    async def _send_all(self, claimed: list[Claimed]) -> None:
        """Send with bounded concurrency, recording outcomes in small groups as they come.

        Recording as we go, not after the whole batch, is what keeps the duplicate window
        small: a crash can only lose the outcomes of sends in flight or not yet flushed.
        """
        gate = asyncio.Semaphore(self.policy.concurrency)
        unrecorded: list[Outcome] = []

        async def send_one(item: Claimed) -> None:
            async with gate:
                unrecorded.append(await self._send(item))
            if len(unrecorded) >= self.policy.flush_every:
                group = unrecorded.copy()
                unrecorded.clear()
                await asyncio.to_thread(self.record, group)

        await asyncio.gather(*(send_one(item) for item in claimed))
        if unrecorded:
            await asyncio.to_thread(self.record, unrecorded)

    async def _send(self, item: Claimed) -> Outcome:
        text, keyboard = reminder_message(
            occurrence_id=item.occurrence_id,
            kind=item.kind,
            label=item.label,
            tip=tip_for(self.guide, item.kind, item.occurrence_id),
            scheduled_local=item.scheduled_for.astimezone(item.zone),
            late=item.late,
            follow_up=item.follow_up,
        )
        try:
            message = await self.bot.send_message(
                item.user_id,
                text,
                reply_markup=keyboard,
                # Never sleep on a 429 while holding a claim: hand the wait back to the database.
                rate_limit_args=PaceArgs(priority=Priority.REMINDER, max_retries=0),
            )
        except Forbidden as exc:
            return Outcome(item, "blocked", error=exc.message[:200])
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                return Outcome(item, "blocked", error=exc.message[:200])
            log.error("reminder %s refused: %s", item.occurrence_id, exc.message)
            return Outcome(item, FAILED, error=exc.message[:200])
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            return Outcome(item, PENDING, retry_at=self.clock() + timedelta(seconds=seconds))
        except TelegramError as exc:  # network trouble, timeouts, 5xx: try again later
            if item.attempts >= MAX_ATTEMPTS:
                return Outcome(item, FAILED, error=f"gave up: {exc}"[:200])
            return Outcome(item, PENDING, retry_at=self.clock() + retry_delay(item.attempts))
        return Outcome(item, SENT, message_id=message.message_id)

    def record(self, outcomes: list[Outcome]) -> None:
        """Write every outcome in one transaction; only rows we still own are touched."""
        now = self.clock()
        owned = (
            OCCURRENCES.c.id == _bind("oid"),
            OCCURRENCES.c.status == SENDING,
            OCCURRENCES.c.claimed_by == self.instance,
        )
        sent = [
            {"oid": o.claimed.occurrence_id, "mid": o.message_id}
            for o in outcomes
            if o.status == SENT
        ]
        retry = [
            {"oid": o.claimed.occurrence_id, "at": o.retry_at}
            for o in outcomes
            if o.status == PENDING
        ]
        failed = [
            {"oid": o.claimed.occurrence_id, "err": o.error}
            for o in outcomes
            if o.status in (FAILED, "blocked")
        ]
        blocked_users = {o.claimed.user_id for o in outcomes if o.status == "blocked"}
        with self.engine.begin() as conn:
            if sent:
                conn.execute(
                    update(OCCURRENCES)
                    .where(*owned)
                    .values(status=SENT, sent_at=now, message_id=_bind("mid"), claimed_by=None),
                    sent,
                )
            if retry:
                conn.execute(
                    update(OCCURRENCES)
                    .where(*owned)
                    .values(status=PENDING, due_at=_bind("at", UTCDateTime()), claimed_by=None),
                    retry,
                )
            if failed:
                conn.execute(
                    update(OCCURRENCES)
                    .where(*owned)
                    .values(status=FAILED, outcome_at=now, error=_bind("err"), claimed_by=None),
                    failed,
                )
        if retry or failed:
            log.info(
                "reminders: %d sent, %d to retry, %d failed", len(sent), len(retry), len(failed)
            )
        if blocked_users:
            with new_session(self.engine) as session:
                for user_id in blocked_users:
                    repo.mark_blocked(session=session, user_id=user_id, now=now)
            log.info("%d user(s) blocked the bot; their reminders are stopped", len(blocked_users))

    def _zone(self, key: str | None) -> tzinfo:
        return zone_from_key(key or self.default_tz)


def _bind(name: str, type_: Any = None) -> Any:
    # Typed, so UTC datetimes pass through UTCDateTime like any column value.
    return bindparam(name, type_=type_)
