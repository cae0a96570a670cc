"""Sending broadcasts: the reminder engine's claims, leases and pacer, one priority lower.

Each bot process runs one broadcaster beside its reminder dispatcher. A round claims the
due deliveries of running broadcasts (never more than this process can send in a few
seconds at its share of the rate), sends them through the one pacer at broadcast
priority, so replies and reminders always go first, and records each outcome as Telegram
answers. Claims are kept and checked exactly as the dispatcher's are (`leases.py`), so a
recipient is sent twice only if its process dies between Telegram's answer and the
commit of that outcome. Broadcasts started from the command line are noticed within a
poll interval; those started from Telegram, at once.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, exists, or_, select, update
from sqlalchemy.engine import Connection
from telegram import InlineKeyboardMarkup, Message, MessageId
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import ExtBot

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import broadcasts as store
from miliabot_tg import repo
from miliabot_tg.broadcasts import BROADCASTS, DELIVERIES, PREFERENCES, USERS
from miliabot_tg.content import Guide
from miliabot_tg.db import new_session
from miliabot_tg.leases import (
    BatchSender,
    Lease,
    WorkTable,
    claim_rows,
    release_mine,
    release_stale,
    renew_rows,
)
from miliabot_tg.models import BroadcastStatus, DeliveryStatus, UserStatus
from miliabot_tg.pacing import PaceArgs, PacerClosedError, Priority, SendAbandonedError

log = logging.getLogger(__name__)

WORK = WorkTable(DELIVERIES)
SENT, BLOCKED, FAILED, SKIPPED = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.BLOCKED.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
)
PENDING, SENDING = DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value
ABANDONED = "abandoned"  # not sent (claim ran short, bot stopping): given back untouched


@dataclass(frozen=True)
class BroadcastPolicy:
    """How broadcasts are sent; the defaults are the production ones."""

    poll: timedelta = timedelta(seconds=5)  # look for new work at least this often
    window: timedelta = timedelta(seconds=5)  # claim what goes out in this long at our rate
    batch: int = 1000  # at most this many claimed at once
    give_up_after: timedelta = timedelta(hours=24)  # passing failures retried until then
    progress_every: timedelta = timedelta(seconds=3)  # the operator's progress message
    retry_soon: timedelta = timedelta(seconds=5)  # after a failed round (database trouble)


def claim_size(policy: BroadcastPolicy, rate: float) -> int:
    """What one round may claim: what this process sends in `window` at `rate`."""
    if not rate > 0:
        return 1
    fits = rate * policy.window.total_seconds()
    return max(1, min(policy.batch, math.floor(fits) if math.isfinite(fits) else policy.batch))


def retry_delay(attempts: int) -> timedelta:
    """Back off 5 s, 10 s, 20 s … up to 10 minutes between attempts at one recipient."""
    return timedelta(seconds=min(5 * 2 ** min(max(attempts - 1, 0), 10), 600))


@dataclass(frozen=True)
class Recipient:
    """A claimed delivery and what it takes to send it."""

    delivery_id: int
    broadcast_id: int
    user_id: int
    attempts: int


@dataclass(frozen=True)
class Body:
    """What a broadcast sends, loaded once per round."""

    kind: str
    text: str | None
    snippet_id: str | None
    source: tuple[int, int] | None
    started_at: datetime
    snippet_ids: tuple[str, ...] = ()  # a "snippets" body: a button for each


@dataclass(frozen=True)
class Delivered:
    """What happened to one recipient."""

    recipient: Recipient
    status: str  # SENT, PENDING (retry at retry_at), BLOCKED, FAILED, ABANDONED
    message_id: int | None = None
    retry_at: datetime | None = None
    error: str | None = None


class Broadcaster:
    """Sends the due deliveries of running broadcasts, round after round."""

    def __init__(
        self,
        *,
        bot: ExtBot[Any],
        engine: Engine,
        guide: Callable[[], Guide],
        clock: Callable[[], datetime],
        instance: str,
        lease: Lease,
        policy: BroadcastPolicy | None = None,
        send_rate: Callable[[], float] = lambda: math.inf,
        keep_going: Callable[[], bool] = lambda: True,
        beat: Callable[[datetime], Any] | None = None,
        paid: bool = False,
    ) -> None:
        self.bot = bot
        self.engine = engine
        self.guide = guide
        self.clock = clock
        self.instance = instance
        self.policy = policy or BroadcastPolicy()
        self.send_rate = send_rate
        self.keep_going = keep_going
        # Paid broadcasts: `bot` paces at the paid rate, and each message says it is paid.
        self.paid = paid

        async def no_beat(_now: datetime) -> None:
            return None

        self._batch: BatchSender[Delivered] = BatchSender(
            lease=lease,
            clock=clock,
            keep_going=lambda: self.keep_going() and not self._stopping,
            renew=lambda ids, now: self.renew(ids, now),
            record=lambda outcomes: self.record(outcomes),
            beat=beat or no_beat,
            what="broadcast",
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lease = lease

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin sending in a task of its own."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="broadcaster")

    def wake(self) -> None:
        """Look for work now (a broadcast was started or resumed in this process)."""
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop after the messages on the wire; what is still claimed is given back.

        The round in hand sends nothing more and ends once Telegram has answered what it
        was sent (and the outcomes are recorded); only if that takes longer than `grace`
        is it cancelled, which may leave a message sent but unrecorded.
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                log.warning("the broadcast round did not end within %.0f s; cancelling", grace)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.record_outcomes()

    async def record_outcomes(self) -> bool:
        """Record the outcomes still in hand; False if the database would not take them."""
        if not self._batch.unrecorded:
            return True
        try:
            await self._batch.flush()
        except Exception:
            log.warning(
                "could not record %d broadcast outcome(s) before stopping; their claims "
                "are kept until the lease runs out",
                len(self._batch.unrecorded),
            )
            return False
        return True

    async def _loop(self) -> None:
        while not self._stopping:
            pause = self.policy.poll
            try:
                await self.run_round()
                following = await asyncio.to_thread(self._next_due)
                if following is not None:
                    pause = min(pause, max(following - self.clock(), timedelta(0)))
            except Exception:
                log.exception("a broadcast round failed; trying again soon")
                pause = self.policy.retry_soon
            self._wake.clear()
            if self._stopping:  # asked while the round ran; its wake-up was just cleared
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause.total_seconds())

    def _next_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            return store.next_due(conn)

    async def run_round(self) -> int:
        """Send what is due now, in claims of a few seconds' worth; return how many tried."""
        if self._batch.unrecorded:
            await self._batch.flush()
        tried = 0
        while self.keep_going() and not self._stopping:
            now = self.clock()
            claimed, bodies = await asyncio.to_thread(
                self.claim, now, claim_size(self.policy, self.send_rate())
            )
            if claimed:
                send = self._sender(bodies)
                ids = [r.delivery_id for r in claimed]
                await self._batch.send_all(([r] for r in claimed), ids, now, send)
                tried += len(claimed)
            finished = await asyncio.to_thread(self.finish, {r.broadcast_id for r in claimed})
            await self._report_progress(finished)
            if not claimed:
                return tried
        return tried

    # --- the database ---------------------------------------------------------------------

    def claim(self, now: datetime, limit: int) -> tuple[list[Recipient], dict[int, Body]]:
        """Claim due deliveries of running broadcasts; skip users who may not get one now."""
        c = DELIVERIES.c
        running = exists().where(
            BROADCASTS.c.id == c.broadcast_id,
            BROADCASTS.c.status == BroadcastStatus.RUNNING.value,
        )
        with self.engine.begin() as conn:
            store_sweep(conn, now, self._lease.lease)
            taken = claim_rows(
                conn,
                WORK,
                instance=self.instance,
                now=now,
                limit=limit,
                returning=[c.id, c.broadcast_id, c.user_id, c.attempts],
                where=[running],
            )
            if not taken:
                return [], {}
            allowed = self._still_wanted(conn, {row.user_id for row in taken})
            skipped = [row.id for row in taken if row.user_id not in allowed]
            if skipped:
                conn.execute(
                    update(DELIVERIES)
                    .where(c.id.in_(skipped))
                    .values(status=SKIPPED, claimed_by=None, error="left or opted out")
                )
            bodies = self._bodies(conn, {row.broadcast_id for row in taken})
        recipients = [
            Recipient(row.id, row.broadcast_id, row.user_id, row.attempts)
            for row in taken
            if row.user_id in allowed
        ]
        return recipients, bodies

    @staticmethod
    def _still_wanted(conn: Connection, user_ids: set[int]) -> set[int]:
        """Users who are active and still want announcements (they may have changed since)."""
        query = (
            select(USERS.c.id)
            .select_from(USERS.outerjoin(PREFERENCES, PREFERENCES.c.user_id == USERS.c.id))
            .where(
                USERS.c.id.in_(user_ids),
                USERS.c.status == UserStatus.ACTIVE.value,
                or_(PREFERENCES.c.announcements.is_(None), PREFERENCES.c.announcements.is_(True)),
            )
        )
        return set(conn.execute(query).scalars())

    @staticmethod
    def _bodies(conn: Connection, broadcast_ids: set[int]) -> dict[int, Body]:
        rows = conn.execute(select(BROADCASTS).where(BROADCASTS.c.id.in_(broadcast_ids)))
        return {
            row.id: Body(
                kind=row.body,
                text=row.text,
                snippet_id=row.snippet_id,
                source=(row.source_chat_id, row.source_message_id)
                if row.source_chat_id is not None and row.source_message_id is not None
                else None,
                started_at=row.started_at or row.created_at,
                snippet_ids=tuple(row.snippet_ids.split(",")) if row.snippet_ids else (),
            )
            for row in rows
        }

    def renew(self, ids: Sequence[int], now: datetime) -> set[int]:
        """Extend this process's claims on these deliveries; return those it still holds."""
        with self.engine.begin() as conn:
            return renew_rows(conn, WORK, ids, instance=self.instance, now=now)

    def release_claims(self) -> int:
        """Give back every delivery this process still holds, at once (it is stopping)."""
        with self.engine.begin() as conn:
            return release_mine(conn, WORK, instance=self.instance)

    def record(self, outcomes: list[Delivered]) -> None:
        """Write every outcome in one transaction; only rows this process owns are touched."""
        if not outcomes:
            return
        now = self.clock()
        c = DELIVERIES.c
        with self.engine.begin() as conn:
            for outcome in outcomes:
                values: dict[str, Any] = {"claimed_by": None}
                if outcome.status == SENT:
                    values |= {"status": SENT, "sent_at": now, "message_id": outcome.message_id}
                elif outcome.status == PENDING:
                    values |= {"status": PENDING, "due_at": outcome.retry_at}
                elif outcome.status == ABANDONED:
                    values |= {"status": PENDING}
                else:
                    values |= {"status": outcome.status, "error": outcome.error}
                conn.execute(
                    update(DELIVERIES)
                    .where(
                        c.id == outcome.recipient.delivery_id,
                        c.status == SENDING,
                        c.claimed_by == self.instance,
                    )
                    .values(**values)
                )
        blocked = {o.recipient.user_id for o in outcomes if o.status == BLOCKED}
        if blocked:
            with new_session(self.engine) as session:
                for user_id in blocked:
                    repo.mark_blocked(session=session, user_id=user_id, now=now)

    def finish(self, broadcast_ids: set[int]) -> list[int]:
        """Mark finished broadcasts done; return the ones this process finished."""
        with self.engine.begin() as conn:
            return store.finish_done(conn, sorted(broadcast_ids), self.clock())

    # --- sending ---------------------------------------------------------------------------

    def _sender(self, bodies: dict[int, Body]) -> Callable[[list[Recipient]], Any]:
        async def send(group: list[Recipient]) -> list[Delivered]:
            (recipient,) = group
            return [await self._send(recipient, bodies[recipient.broadcast_id])]

        return send

    async def _send(self, recipient: Recipient, body: Body) -> Delivered:
        pace = PaceArgs(
            priority=Priority.BROADCAST,
            # Never sleep on a 429 while holding a claim: hand the wait back to the database.
            max_retries=0,
            go_ahead=lambda: self._batch.may_send([recipient.delivery_id]),
        )
        try:
            sent = await self._deliver(recipient.user_id, body, pace)
        except (SendAbandonedError, PacerClosedError):
            return Delivered(recipient, ABANDONED)
        except Forbidden as exc:
            return Delivered(recipient, BLOCKED, error=exc.message[:200])
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                return Delivered(recipient, BLOCKED, error=exc.message[:200])
            log.error(
                "broadcast delivery %s refused: %s",
                recipient.delivery_id,
                exc.message,
                extra={"delivery_id": recipient.delivery_id},
            )
            return Delivered(recipient, FAILED, error=exc.message[:200])
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            return self._retry(recipient, body, self.clock() + timedelta(seconds=seconds), "429")
        except TelegramError as exc:  # network trouble, timeouts, 5xx: try again later
            at = self.clock() + retry_delay(recipient.attempts)
            return self._retry(recipient, body, at, str(exc))
        except LookupError as exc:  # the snippet was removed from the guide since
            return Delivered(recipient, FAILED, error=str(exc)[:200])
        return Delivered(recipient, SENT, message_id=sent.message_id)

    def _retry(self, recipient: Recipient, body: Body, at: datetime, error: str) -> Delivered:
        if at > body.started_at + self.policy.give_up_after:
            return Delivered(recipient, FAILED, error=f"gave up: {error}"[:200])
        return Delivered(recipient, PENDING, retry_at=at)

    async def _deliver(self, chat_id: int, body: Body, pace: PaceArgs) -> Message | MessageId:
        paid = self.paid or None
        return await deliver(
            self.bot, chat_id, body, self.guide(), allow_paid_broadcast=paid, rate_limit_args=pace
        )

    # --- the operator's view ------------------------------------------------------------------

    async def _report_progress(self, finished: list[int]) -> None:
        """Edit each running broadcast's progress message, one process every few seconds."""
        try:
            edits = await asyncio.to_thread(self._progress_due, finished)
        except Exception:
            log.warning("could not read broadcast progress", exc_info=True)
            return
        for chat_id, message_id, text, markup in edits:
            with contextlib.suppress(TelegramError):
                await self.bot.edit_message_text(
                    text,
                    chat_id=chat_id,
                    message_id=message_id,
                    reply_markup=markup,  # the operator's pause/resume/cancel buttons stay
                    rate_limit_args=PaceArgs(priority=Priority.INTERACTIVE, max_retries=0),
                )

    def _progress_due(
        self, finished: list[int]
    ) -> list[tuple[int, int, str, InlineKeyboardMarkup | None]]:
        """The progress messages to edit now: (chat, message, text, buttons)."""
        now = self.clock()
        edits: list[tuple[int, int, str, InlineKeyboardMarkup | None]] = []
        with self.engine.begin() as conn:
            watched = conn.execute(
                select(
                    BROADCASTS.c.id,
                    BROADCASTS.c.progress_chat_id,
                    BROADCASTS.c.progress_message_id,
                ).where(
                    BROADCASTS.c.progress_message_id.is_not(None),
                    or_(
                        BROADCASTS.c.status == BroadcastStatus.RUNNING.value,
                        BROADCASTS.c.id.in_(finished),
                    ),
                )
            ).all()
            for row in watched:
                final = row.id in finished
                if not final and not store.take_progress_turn(
                    conn, row.id, now, self.policy.progress_every
                ):
                    continue
                progress = store.progress(conn, row.id)
                if progress is not None:
                    text, markup = bt.progress_text(progress, now), bt.progress_markup(progress)
                    edits.append((row.progress_chat_id, row.progress_message_id, text, markup))
        return edits


def render(body: Body, guide: Guide) -> tuple[str, InlineKeyboardMarkup]:
    """A text or snippet broadcast's message as its users (and the operator's preview) see it."""
    if body.kind == "snippet" and body.snippet_id is not None:
        snippet = guide.get(body.snippet_id)
        if snippet is None:
            raise LookupError(f"snippet {body.snippet_id} is no longer in the guide")
        return bt.snippet_announcement(snippet)
    if body.kind == "snippets":
        # Snippets removed from the guide since lose their button; the text stays.
        return bt.snippets_announcement(body.text or "", guide, body.snippet_ids)
    return body.text or "", bt.with_off_button()


async def deliver(
    bot: ExtBot[Any], chat_id: int, body: Body, guide: Guide, **send: Any
) -> Message | MessageId:
    """Send a broadcast's message to one chat: to each recipient, and as the preview."""
    if body.kind == "copy" and body.source is not None:
        from_chat, message_id = body.source
        return await bot.copy_message(
            chat_id, from_chat, message_id, reply_markup=bt.with_off_button(), **send
        )
    text, markup = render(body, guide)
    return await bot.send_message(chat_id, text, reply_markup=markup, **send)


def store_sweep(conn: Connection, now: datetime, lease: timedelta) -> int:
    """Give back deliveries whose sender died (its claim outlived the lease)."""
    return release_stale(conn, WORK, now=now, lease=lease)
