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
duplicate window is therefore the moment between Telegram's answer and our commit, for
the messages in flight or not yet recorded; nothing is ever lost.

A claim never expires under a live sender: a cycle claims only what it can send well
within the lease at its share of the rate, renews its claims while it sends, and checks
the claim once more at the moment the pacer lets each message go (`PaceArgs.go_ahead`).
So another process takes over a message only when its sender is dead or cut off from the
database, whatever the number of processes or the length of a 429 pause.
"""

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from telegram import InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import CallbackContext, ExtBot, Job, JobQueue

from miliabot_tg import repo
from miliabot_tg.content import Guide
from miliabot_tg.db import new_session, reading
from miliabot_tg.leases import (
    BatchSender,
    Lease,
    WorkTable,
    claim_rows,
    release_mine,
    release_stale,
    renew_rows,
)
from miliabot_tg.models import (
    INSTANCE_LENGTH,
    DispatcherHeartbeat,
    Occurrence,
    OccurrenceStatus,
    Reminder,
    User,
    UserPreferences,
    UTCDateTime,
)
from miliabot_tg.pacing import PaceArgs, PacerClosedError, Priority, SendAbandonedError
from miliabot_tg.reminders.texts import MAX_GROUPED, DueReminder, reminders_message, tip_for
from miliabot_tg.schedule import QuietHours, Rule, defer_out_of_quiet, next_occurrence
from miliabot_tg.schedule import occurrences_between as calendar_between
from miliabot_tg.timezones import zone_from_key

log = logging.getLogger(__name__)

REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]
OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
USERS: Table = User.__table__  # type: ignore[attr-defined]
PREFERENCES: Table = UserPreferences.__table__  # type: ignore[attr-defined]
HEARTBEATS: Table = DispatcherHeartbeat.__table__  # type: ignore[attr-defined]
WORK = WorkTable(OCCURRENCES, claimable=repo.CLAIMABLE)

PENDING, SENDING, SENT = (
    OccurrenceStatus.PENDING.value,
    OccurrenceStatus.SENDING.value,
    OccurrenceStatus.SENT.value,
)
MISSED, FAILED = OccurrenceStatus.MISSED.value, OccurrenceStatus.FAILED.value
SKIPPED = OccurrenceStatus.SKIPPED.value
# Finished occurrences: history, kept for `DispatchPolicy.history`, then deleted.
FINISHED = tuple(s.value for s in OccurrenceStatus if s.value not in (*repo.CLAIMABLE, SENDING))
# How often old history is pruned.
PRUNE_EVERY = timedelta(hours=1)
# Outcomes that never reach the database as a status of their own.
BLOCKED, ABANDONED = "blocked", "abandoned"
# A hook that rewords a reminder message just before it is sent: (user id, items, text,
# keyboard) to (text, keyboard). It runs on the event loop with claims held: no I/O.
Decorate = Callable[
    [int, Sequence[DueReminder], str, InlineKeyboardMarkup], tuple[str, InlineKeyboardMarkup]
]


@dataclass(frozen=True)
class DispatchPolicy:
    """How the engine behaves; the defaults are the production ones."""

    grace: timedelta = timedelta(hours=2)  # older missed occurrences are recorded, not sent
    lease: timedelta = timedelta(seconds=60)  # a claim older than this is presumed dead
    late_after: timedelta = timedelta(minutes=1)  # sent later than this counts as late
    batch: int = 500  # rows per transaction
    concurrency: int = 64  # sends in flight at once (the pacer's `max_in_flight`)
    flush_every: int = 16  # outcomes recorded per transaction while a batch is sent
    idle_poll: timedelta = timedelta(seconds=30)  # wake at least this often (other processes)
    heartbeat: timedelta = timedelta(seconds=10)  # how often a process says it is alive
    retry_soon: timedelta = timedelta(seconds=5)  # after a failed cycle (database trouble)
    history: timedelta = timedelta(days=400)  # finished occurrences are kept this long
    prune_batch: int = 1000  # history rows deleted per transaction

    @property
    def leasing(self) -> Lease:
        """How claims are kept while a batch is sent."""
        return Lease(lease=self.lease, flush_every=self.flush_every, heartbeat=self.heartbeat)

    @property
    def stalled_after(self) -> timedelta:
        """A dispatcher that has not finished a cycle for this long is restarted."""
        return 3 * self.idle_poll


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
    return timedelta(seconds=min(5 * 2 ** min(max(attempts - 1, 0), 10), 300))


def claim_limit(policy: DispatchPolicy, rate: float) -> int:
    """How many occurrences one cycle may claim: what goes out in half a lease at `rate`.

    Claiming more than can be sent before the claims need renewing only makes other
    processes wait for work this one cannot do yet.
    """
    if not rate > 0:
        return 1
    fits = rate * policy.lease.total_seconds() / 2
    return max(1, min(policy.batch, math.floor(fits) if math.isfinite(fits) else policy.batch))


def instance_name(hostname: str, pid: int, nonce: str) -> str:
    """Name this process in claims and heartbeats, within the column's 64 characters."""
    suffix = f":{pid}:{nonce}"
    return hostname[: INSTANCE_LENGTH - len(suffix)] + suffix


def in_groups(
    claimed: Sequence["Claimed"], size: int = MAX_GROUPED, *, alone: Collection[str] = ()
) -> Iterator[list["Claimed"]]:
    """Group claimed occurrences by user, in claim order, at most `size` to a message.

    A person with several reminders at one minute wants one message, not a burst; and one
    message per chat keeps a batch from waiting on any chat's pacing. Kinds in `alone`
    (those with a message of their own, see `Render`) always go by themselves.
    """
    by_user: dict[tuple[int, int], list[Claimed]] = {}
    for item in claimed:
        key = (item.user_id, item.occurrence_id if item.kind in alone else 0)
        by_user.setdefault(key, []).append(item)
    for items in by_user.values():
        for start in range(0, len(items), size):
            yield items[start : start + size]


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
    expires_at: datetime  # retried until then, then recorded missed


@dataclass(frozen=True)
class Rendered:
    """A message of its own for an occurrence of a special kind: text, or a photo with it
    as its caption."""

    text: str
    photo: bytes | None = None
    keyboard: InlineKeyboardMarkup | None = None


# Makes the message for one claimed occurrence of a special kind (the weekly summary): None
# means there is nothing to send, and the occurrence is recorded as skipped. It may fail; the
# occurrence is then retried like a send that failed for a passing reason.
Render = Callable[["Claimed"], Awaitable[Rendered | None]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one send."""

    claimed: Claimed
    # SENT, PENDING (try again at retry_at), MISSED, FAILED, SKIPPED, BLOCKED or ABANDONED
    status: str
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
        guide: Guide | Callable[[], Guide],
        clock: Callable[[], datetime],
        default_tz: str,
        policy: DispatchPolicy | None = None,
        instance: str | None = None,
        on_share: Callable[[int], None] = lambda _processes: None,
        send_rate: Callable[[], float] = lambda: math.inf,
        keep_going: Callable[[], bool] = lambda: True,
        on_outcomes: Callable[[list[tuple[str, bool]]], None] = lambda _outcomes: None,
        decorate: Decorate | None = None,
        renderers: Mapping[str, Render] | None = None,
    ) -> None:
        self.engine = engine
        # Told (status, late) of each outcome once recorded, for the metrics.
        self.on_outcomes = on_outcomes
        # Per-kind wording added at send time from memory only (the UV on sunscreen
        # reminders, outdoor mode's reapply reminders); see outdoors_handlers.UvService.
        self.decorate = decorate
        # A callable follows the guide in service (publishing.LiveGuide), tips included.
        self._guide = guide if callable(guide) else lambda: guide
        # Kinds whose occurrences are not reminders but messages of their own.
        self.renderers: Mapping[str, Render] = renderers or {}
        self.clock = clock
        self.default_tz = default_tz
        self.policy = policy or DispatchPolicy()
        self.instance = instance or instance_name(
            socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8]
        )
        self._dialect = engine.dialect.name
        self._job_queue: JobQueue[Any] | None = None
        self._job: Job[Any] | None = None
        self._wake_at: datetime | None = None
        self._running = False
        self._again = False
        self._cycle_task: asyncio.Task[None] | None = None
        # Monotonic time of the last sign of progress (a cycle or batch finished, claims
        # renewed); the watchdog restarts a dispatcher that shows none for too long.
        self._last_progress = time.monotonic()
        self.bot = bot
        # Told how many bot processes share the database, so each can take its part of
        # Telegram's global rate; `send_rate` reads back the part this process has.
        self.on_share = on_share
        self.send_rate = send_rate
        self._last_heartbeat: datetime | None = None
        # False once the application is stopping: finish the batch in hand, take no more,
        # so a shutdown with a large backlog is quick and the rest waits in the database.
        self.keep_going = keep_going
        # Sends a claimed batch; keeps outcomes the database has not taken yet (it failed
        # mid-batch), to be written first thing in the next cycle.
        self._batch: BatchSender[Outcome] = BatchSender(
            lease=self.policy.leasing,
            clock=clock,
            # Looked up at each call, so a test (or a subclass) may replace any of these.
            keep_going=lambda: self.keep_going(),
            renew=lambda ids, now: self.renew(ids, now),
            record=lambda outcomes: self.record(outcomes),
            beat=self.beat,
            what="reminder",
        )

    @property
    def guide(self) -> Guide:
        """The guide in service now."""
        return self._guide()

    # --- waking up -------------------------------------------------------------------------

    def start(self, job_queue: "JobQueue[Any]") -> None:
        """Begin dispatching through PTB's JobQueue, with a first cycle right away.

        Beside it run a watchdog, which restarts a dispatcher that has stopped cycling,
        and the pruning of old history.
        """
        self._job_queue = job_queue
        self._last_progress = time.monotonic()
        job_queue.run_repeating(
            self._watchdog, interval=self.policy.idle_poll.total_seconds(), name="watchdog"
        )
        job_queue.run_repeating(
            self._prune, interval=PRUNE_EVERY.total_seconds(), first=60.0, name="prune"
        )
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
        if not self.keep_going():
            # Stopping: a cycle begun now would be cancelled by the JobQueue's shutdown,
            # perhaps mid-send. What is due waits in the database for the next start.
            return
        if self._running:
            self._again = True
            return
        self._running = True
        # A task of our own, so that the watchdog can cancel a cycle that hangs.
        self._cycle_task = asyncio.create_task(self._cycles())
        await asyncio.wait({self._cycle_task})

    async def _cycles(self) -> None:
        """Run cycles while more is due, then plan the next wake-up, whatever happened."""
        wake_at: datetime | None = None
        try:
            while True:
                self._again = False
                await self.run_cycle()
                if not self._again:
                    break
            now = self.clock()
            next_due = await asyncio.to_thread(self.next_due)
            wake_at = now + self.policy.idle_poll
            if next_due is not None and next_due < wake_at:
                wake_at = next_due
        except Exception:
            wake_at = self.clock() + self.policy.retry_soon
            log.exception(
                "dispatch cycle failed; trying again in %.1f s",
                self.policy.retry_soon.total_seconds(),
            )
        finally:
            self._running = False
            self._cycle_task = None
            self._last_progress = time.monotonic()
            # Every way out plans the next wake-up (a cancelled cycle is the watchdog's).
            if wake_at is not None and (self._wake_at is None or wake_at < self._wake_at):
                self._schedule(wake_at)

    async def _watchdog(self, _context: CallbackContext[Any, Any, Any, Any]) -> None:
        """Restart the dispatcher if it has shown no progress for a few idle periods."""
        if not self.keep_going():
            return  # stopping: a slow last cycle is waited for, not restarted
        # Renewing a long batch's claims counts as progress too.
        stalled = time.monotonic() - max(self._last_progress, self._batch.last_progress)
        if stalled < self.policy.stalled_after.total_seconds():
            return
        log.warning("the dispatcher has made no progress for %d s; restarting it", stalled)
        task = self._cycle_task
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self._running = False
        self._last_progress = time.monotonic()
        self._schedule(self.clock())

    def since_progress(self) -> float:
        """Seconds since the dispatcher last showed progress (a cycle, a batch, a renewal)."""
        return time.monotonic() - max(self._last_progress, self._batch.last_progress)

    async def _prune(self, _context: CallbackContext[Any, Any, Any, Any]) -> None:
        """Delete old history off the hot path; a failure waits for the next round."""
        try:
            deleted = await asyncio.to_thread(self.prune_history, self.clock())
        except Exception:
            log.exception("pruning old reminder history failed; trying again later")
            return
        if deleted:
            log.info("deleted %d reminder outcome(s) older than the history period", deleted)

    # --- one cycle ---------------------------------------------------------------------------

    async def run_cycle(self) -> int:
        """Do everything that is due now; return how many occurrences were attempted."""
        attempted = 0
        now = self.clock()
        if self._batch.unrecorded:
            await self._batch.flush()
        await self.beat(now)
        await asyncio.to_thread(self.sweep, now)
        limit = claim_limit(self.policy, self.send_rate())
        while True:
            made = await asyncio.to_thread(self.materialize, now)
            claimed = await asyncio.to_thread(self.claim, now, limit)
            if claimed:
                await self._send_all(claimed, now)
                attempted += len(claimed)
            self._last_progress = time.monotonic()
            if made < self.policy.batch and len(claimed) < limit:
                if attempted:
                    log.info("dispatched %d reminder occurrence(s)", attempted)
                return attempted
            if not self.keep_going():
                log.info("stopping with work left in the database for the next start")
                return attempted
            now = self.clock()
            # A long backlog: keep saying we are alive, so no one takes our share of the rate.
            await self.beat(now)
            limit = claim_limit(self.policy, self.send_rate())

    async def beat(self, now: datetime) -> None:
        """Say this process is alive (at most every heartbeat period) and learn how many are."""
        if self._last_heartbeat is None or now - self._last_heartbeat >= self.policy.heartbeat:
            self._last_heartbeat = now
            self.on_share(await asyncio.to_thread(self.heartbeat, now))

    def next_due(self) -> datetime | None:
        """Return the earliest time anything is due, from the database.

        That includes the moment another dispatcher's claim expires, so work left behind
        by a crashed process is taken over as soon as its lease runs out.
        """
        occurrences = OCCURRENCES.c
        with reading(self.engine).connect() as conn:
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
            released = release_stale(conn, WORK, now=now, lease=self.policy.lease)
            expires_at, due_at = OCCURRENCES.c.expires_at, OCCURRENCES.c.due_at
            expired = conn.execute(
                update(OCCURRENCES)
                .where(
                    OCCURRENCES.c.status.in_(repo.CLAIMABLE),
                    or_(
                        expires_at < now,
                        and_(expires_at.is_(None), due_at < now - self.policy.grace),
                    ),
                )
                .values(status=MISSED, outcome_at=now)
            ).rowcount
        if released or expired:
            log.info("released %d stale claim(s); %d occurrence(s) missed", released, expired)
        self.on_outcomes([(MISSED, False)] * expired)

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
        self.on_outcomes([(MISSED, False) for o in occurrences if o["status"] == MISSED])
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

    def claim(self, now: datetime, limit: int | None = None) -> list[Claimed]:
        """Take ownership of due occurrences, atomically, and load what sending needs."""
        c = OCCURRENCES.c
        returning = [c.id, c.reminder_id, c.user_id, c.scheduled_for, c.due_at, c.expires_at]
        returning += [c.late, c.snoozes, c.attempts]
        with self.engine.begin() as conn:
            taken = claim_rows(
                conn,
                WORK,
                instance=self.instance,
                now=now,
                limit=limit or self.policy.batch,
                returning=returning,
            )
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
                expires_at=row.expires_at or row.due_at + self.policy.grace,
            )
            for row in sorted(taken, key=lambda r: r.scheduled_for)
        ]

    def renew(self, occurrence_ids: Sequence[int], now: datetime) -> set[int]:
        """Extend this process's claims on these occurrences; return those it still holds."""
        with self.engine.begin() as conn:
            return renew_rows(conn, WORK, occurrence_ids, instance=self.instance, now=now)

    def release_claims(self) -> int:
        """Give back every occurrence this process still holds, at once (it is stopping)."""
        with self.engine.begin() as conn:
            return release_mine(conn, WORK, instance=self.instance)

    async def record_outcomes(self) -> bool:
        """Record the outcomes still in hand; False if the database would not take them.

        Called before claims are released at shutdown: a claim released with its message
        sent but not recorded would be sent again.
        """
        if not self._batch.unrecorded:
            return True
        try:
            await self._batch.flush()
        except Exception:
            log.warning(
                "could not record %d reminder outcome(s) before stopping; their claims "
                "are kept until the lease runs out",
                len(self._batch.unrecorded),
            )
            return False
        return True

    async def _send_all(self, claimed: list[Claimed], claimed_at: datetime) -> None:
        """Send, one message per user; the pacer decides how many go out at once."""
        ids = [c.occurrence_id for c in claimed]
        groups = in_groups(claimed, alone=self.renderers.keys())
        await self._batch.send_all(groups, ids, claimed_at, self._send)

    def _may_send(self, group: list[Claimed]) -> bool:
        """Whether this group's claims are still ours with time to spare, right before sending."""
        return self._batch.may_send(item.occurrence_id for item in group)

    async def _send(self, group: list[Claimed]) -> list[Outcome]:
        """Send one user's due occurrences as one message; return an outcome for each."""
        first = group[0]
        items = [
            DueReminder(
                occurrence_id=item.occurrence_id,
                kind=item.kind,
                label=item.label,
                scheduled_local=item.scheduled_for.astimezone(item.zone),
                late=item.late,
                follow_up=item.follow_up,
            )
            for item in group
        ]
        tips = (tip_for(self.guide, i.kind, i.occurrence_id) for i in group)
        render = self.renderers.get(first.kind)
        if render is None:
            text, keyboard = reminders_message(items, next((t for t in tips if t), None))
            if self.decorate is not None:
                text, keyboard = self._decorated(first.user_id, items, text, keyboard)
            rendered: Rendered | None = Rendered(text, keyboard=keyboard)
        else:
            try:
                rendered = await render(first)
            except Exception as exc:  # the database or a chart failed: a passing trouble
                log.exception("could not prepare %s %s", first.kind, first.occurrence_id)
                at = self.clock() + retry_delay(first.attempts)
                return [self._retry(item, at, f"render: {exc!r}") for item in group]
        if rendered is None:
            return [Outcome(item, SKIPPED) for item in group]
        pace = PaceArgs(
            priority=Priority.REMINDER,
            # Never sleep on a 429 while holding a claim: hand the wait back to the database.
            max_retries=0,
            go_ahead=lambda: self._may_send(group),
        )
        try:
            if rendered.photo is not None:
                message = await self.bot.send_photo(
                    first.user_id,
                    rendered.photo,
                    filename="progress.png",
                    caption=rendered.text,
                    reply_markup=rendered.keyboard,
                    rate_limit_args=pace,
                )
            else:
                message = await self.bot.send_message(
                    first.user_id,
                    rendered.text,
                    reply_markup=rendered.keyboard,
                    rate_limit_args=pace,
                )
        except (SendAbandonedError, PacerClosedError):
            # Not sent: the claim ran short while it waited, or the bot is stopping.
            return [Outcome(item, ABANDONED) for item in group]
        except Forbidden as exc:
            return [Outcome(item, BLOCKED, error=exc.message[:200]) for item in group]
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                return [Outcome(item, BLOCKED, error=exc.message[:200]) for item in group]
            log.error(
                "reminder %s refused: %s",
                first.occurrence_id,
                exc.message,
                extra={"occurrence_id": first.occurrence_id},
            )
            return [Outcome(item, FAILED, error=exc.message[:200]) for item in group]
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            at = self.clock() + timedelta(seconds=seconds)
            return [self._retry(item, at, "rate limited") for item in group]
        except TelegramError as exc:  # network trouble, timeouts, 5xx: try again later
            return [
                self._retry(item, self.clock() + retry_delay(item.attempts), str(exc))
                for item in group
            ]
        return [Outcome(item, SENT, message_id=message.message_id) for item in group]

    def _decorated(
        self, user_id: int, items: list[DueReminder], text: str, keyboard: InlineKeyboardMarkup
    ) -> tuple[str, InlineKeyboardMarkup]:
        """The message as the kind's hook words it; as it was if the hook fails."""
        assert self.decorate is not None
        try:
            return self.decorate(user_id, items, text, keyboard)
        except Exception:
            log.exception("decorating a reminder failed; sending it plain")
            return text, keyboard

    @staticmethod
    def _retry(item: Claimed, at: datetime, error: str) -> Outcome:
        """Try again at `at`, unless that is past the occurrence's grace window."""
        if at > item.expires_at:
            return Outcome(item, MISSED, error=f"gave up: {error}"[:200])
        return Outcome(item, PENDING, retry_at=at)

    def record(self, outcomes: list[Outcome]) -> None:
        """Write every outcome in one transaction; only rows we still own are touched."""
        if not outcomes:
            return
        now = self.clock()
        owned = (
            OCCURRENCES.c.id == _bind("oid"),
            OCCURRENCES.c.status == SENDING,
            OCCURRENCES.c.claimed_by == self.instance,
        )

        def rows(*statuses: str) -> list[dict[str, Any]]:
            return [
                {
                    "oid": o.claimed.occurrence_id,
                    "mid": o.message_id,
                    "at": o.retry_at,
                    "deadline": o.claimed.expires_at,
                    "err": o.error,
                }
                for o in outcomes
                if o.status in statuses
            ]

        sent, retry, gave_up = rows(SENT), rows(PENDING), rows(MISSED)
        failed, abandoned, skipped = rows(FAILED, BLOCKED), rows(ABANDONED), rows(SKIPPED)
        closed = {"claimed_by": None, "outcome_at": now, "error": _bind("err")}
        changes: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
            (
                {"status": SENT, "sent_at": now, "message_id": _bind("mid"), "claimed_by": None},
                sent,
            ),
            (
                {
                    "status": PENDING,
                    "due_at": _bind("at", UTCDateTime()),
                    "expires_at": _bind("deadline", UTCDateTime()),
                    "claimed_by": None,
                },
                retry,
            ),
            ({"status": MISSED, **closed}, gave_up),
            ({"status": FAILED, **closed}, failed),
            ({"status": SKIPPED, **closed}, skipped),  # a special kind had nothing to send
            # Given back untouched: due as before, for whichever process is free first.
            ({"status": PENDING, "claimed_by": None}, abandoned),
        ]
        with self.engine.begin() as conn:
            for values, params in changes:
                if params:
                    conn.execute(update(OCCURRENCES).where(*owned).values(**values), params)
        self.on_outcomes([(o.status, o.claimed.late) for o in outcomes])
        if retry or failed or gave_up or abandoned:
            log.info(
                "reminders: %d sent, %d to retry, %d given back, %d missed, %d failed",
                len(sent),
                len(retry),
                len(abandoned),
                len(gave_up),
                len(failed),
            )
        blocked_users = {o.claimed.user_id for o in outcomes if o.status == BLOCKED}
        if blocked_users:
            with new_session(self.engine) as session:
                for user_id in blocked_users:
                    repo.mark_blocked(session=session, user_id=user_id, now=now)
            log.info("%d user(s) blocked the bot; their reminders are stopped", len(blocked_users))

    def prune_history(self, now: datetime) -> int:
        """Delete finished occurrences older than the history period, a small batch at a time."""
        old = (
            select(OCCURRENCES.c.id)
            .where(
                OCCURRENCES.c.status.in_(FINISHED),
                OCCURRENCES.c.due_at < now - self.policy.history,
            )
            .limit(self.policy.prune_batch)
        )
        if self._dialect == "postgresql":
            old = old.with_for_update(skip_locked=True)
        deleted = 0
        while True:
            # One short transaction per batch, so dispatching never waits long behind it.
            with self.engine.begin() as conn:
                count = conn.execute(
                    delete(OCCURRENCES).where(OCCURRENCES.c.id.in_(old.scalar_subquery()))
                ).rowcount
            deleted += count
            if count < self.policy.prune_batch:
                return deleted

    def _zone(self, key: str | None) -> tzinfo:
        return zone_from_key(key or self.default_tz)


def _bind(name: str, type_: Any = None) -> Any:
    # Typed, so UTC datetimes pass through UTCDateTime like any column value.
    return bindparam(name, type_=type_)
