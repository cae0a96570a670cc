"""Leased claims on rows of work, and sending a claimed batch without ever doubling it.

Reminder occurrences and broadcast deliveries are both rows with a status, a due time
and a claim (`claimed_by`, `claimed_at`). A process claims due rows with one conditional
UPDATE (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two processes never take the same
row; a claim older than the lease is presumed dead and given back. One sender
(:class:`BatchSender`) then sends what it claimed through the pacer, renews the claims
while messages wait for their turn, checks the claim once more at the moment each
message leaves, and records outcomes in small groups as Telegram answers. Both engines
use this one copy, so they keep the same guarantee: a claim never expires under a live
sender, whatever the number of processes or the length of a 429 pause.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, Table, select, update
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

PENDING, SENDING = "pending", "sending"
# A claim validity that lets nothing be sent.
NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class WorkTable:
    """A table of claimable work: which statuses may be claimed."""

    table: Table
    claimable: tuple[str, ...] = (PENDING,)

    @property
    def c(self) -> Any:
        return self.table.c


def claim_rows(
    conn: Connection,
    work: WorkTable,
    *,
    instance: str,
    now: datetime,
    limit: int,
    returning: Sequence[Any],
    where: Sequence[ColumnElement[bool]] = (),
) -> list[Row[Any]]:
    """Claim up to `limit` due rows, oldest due first, and return `returning` of each."""
    c = work.c
    due = (
        select(c.id)
        .where(c.status.in_(work.claimable), c.due_at <= now, *where)
        .order_by(c.due_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=work.table)
    statement = (
        update(work.table)
        .where(c.id.in_(due.scalar_subquery()))
        .values(status=SENDING, claimed_by=instance, claimed_at=now, attempts=c.attempts + 1)
        .returning(*returning)
    )
    return list(conn.execute(statement).all())


def renew_rows(
    conn: Connection, work: WorkTable, ids: Sequence[int], *, instance: str, now: datetime
) -> set[int]:
    """Extend this process's claims on these rows; return those it still holds."""
    c = work.c
    mine = select(c.id).where(c.id.in_(ids), c.status == SENDING, c.claimed_by == instance)
    statement = (
        update(work.table)
        .where(c.id.in_(_unlocked(conn, work, mine).scalar_subquery()))
        .values(claimed_at=now)
        .returning(c.id)
    )
    return set(conn.execute(statement).scalars())


def _unlocked(conn: Connection, work: WorkTable, rows: Any) -> Any:
    """On PostgreSQL, only the rows no other transaction has locked, locked for us.

    Statements that update many rows lock them one by one in whatever order the scan
    finds them; two of them (a renewal and another process's stale-claim sweep, say)
    can each hold a row the other waits for: a deadlock. Skipping locked rows means
    never waiting: a renewal that skips a row counts it as lost (it is not sent, which
    is safe), a sweep leaves it for its next round.
    """
    if conn.dialect.name == "postgresql":
        return rows.with_for_update(skip_locked=True, of=work.table)
    return rows


def release_stale(conn: Connection, work: WorkTable, *, now: datetime, lease: timedelta) -> int:
    """Give back claims older than the lease: their process died or lost the database."""
    c = work.c
    stale = select(c.id).where(c.status == SENDING, c.claimed_at < now - lease)
    return conn.execute(
        update(work.table)
        .where(c.id.in_(_unlocked(conn, work, stale).scalar_subquery()))
        .values(status=PENDING, claimed_by=None)
    ).rowcount


def release_mine(conn: Connection, work: WorkTable, *, instance: str) -> int:
    """Give back every claim this process still holds (it is stopping), due as before."""
    c = work.c
    return conn.execute(
        update(work.table)
        .where(c.status == SENDING, c.claimed_by == instance)
        .values(status=PENDING, claimed_by=None)
    ).rowcount


@dataclass(frozen=True)
class Claims:
    """What a sender knows about its claims while a batch is being sent."""

    valid_until: datetime  # the earliest moment any of them may be taken over
    lost: frozenset[int] = frozenset()  # claims another process has taken since


@dataclass(frozen=True)
class Lease:
    """How long claims last and how they are kept."""

    lease: timedelta = timedelta(seconds=60)  # a claim older than this is presumed dead
    flush_every: int = 16  # outcomes recorded per transaction while a batch is sent
    heartbeat: timedelta = timedelta(seconds=10)  # renew at least this often

    @property
    def renew_every(self) -> timedelta:
        """How often claims are renewed while their messages wait to be sent."""
        return min(self.lease / 4, self.heartbeat)

    @property
    def claim_margin(self) -> timedelta:
        """A claim this close to expiry is not used: a send must finish well before it does."""
        return self.lease / 2


ItemT = TypeVar("ItemT")
OutcomeT = TypeVar("OutcomeT")


class BatchSender(Generic[OutcomeT]):
    """Sends claimed work, keeps its claims alive, and records outcomes as they come.

    Recording as we go, not after the whole batch, is what keeps the duplicate window
    small: a crash can only lose the outcomes of sends in flight or not yet flushed.
    Outcomes the database would not take are kept in `unrecorded` and written first next
    time; until then nothing more is sent on these claims.
    """

    def __init__(
        self,
        *,
        lease: Lease,
        clock: Callable[[], datetime],
        keep_going: Callable[[], bool],
        renew: Callable[[Sequence[int], datetime], set[int]],
        record: Callable[[list[OutcomeT]], None],
        beat: Callable[[datetime], Awaitable[None]],
        what: str,
    ) -> None:
        self.lease = lease
        self.clock = clock
        self.keep_going = keep_going
        self._renew = renew
        self._record = record
        self._beat = beat
        self.what = what
        self.claims = Claims(valid_until=NEVER)
        self.unrecorded: list[OutcomeT] = []
        # Monotonic time of the last sign of progress (claims renewed, a batch finished).
        self.last_progress = time.monotonic()

    async def send_all(
        self,
        groups: Iterable[list[ItemT]],
        ids: Sequence[int],
        claimed_at: datetime,
        send: Callable[[list[ItemT]], Awaitable[list[OutcomeT]]],
    ) -> None:
        """Send every group concurrently (the pacer decides how many go at once)."""
        self.claims = Claims(valid_until=claimed_at + self.lease.lease)
        keeper = asyncio.create_task(self._keep_claims(ids))

        async def send_group(group: list[ItemT]) -> None:
            outcomes = await send(group)  # before reading `unrecorded`: a flush swaps it
            self.unrecorded.extend(outcomes)
            if len(self.unrecorded) >= self.lease.flush_every:
                await self.flush(raise_errors=False)

        try:
            await asyncio.gather(*(send_group(group) for group in groups))
        finally:
            keeper.cancel()
            await asyncio.wait({keeper})
        await self.flush()
        self.last_progress = time.monotonic()

    def may_send(self, ids: Iterable[int]) -> bool:
        """Whether these claims are still ours with time to spare, right before sending.

        A stopping bot sends nothing more either: what is left is given back at once.
        """
        if not self.keep_going():
            return False
        claims = self.claims
        if self.clock() + self.lease.claim_margin > claims.valid_until:
            return False
        return not any(i in claims.lost for i in ids)

    async def flush(self, *, raise_errors: bool = True) -> None:
        """Record the outcomes in hand; if the database fails, keep them for the next try."""
        group, self.unrecorded = self.unrecorded, []
        try:
            await asyncio.to_thread(self._record, group)
        except Exception:
            self.unrecorded = group + self.unrecorded
            # Send nothing more on these claims until the database takes writes again (a
            # renewal says so): what is sent now could not be recorded, and would be sent
            # again by whoever takes the claims over.
            self.claims = Claims(valid_until=NEVER)
            if raise_errors:
                raise
            log.warning(
                "could not record %d %s outcome(s) yet; will try again", len(group), self.what
            )

    async def _keep_claims(self, ids: Sequence[int]) -> None:
        """Renew the batch's claims (and the heartbeat) while its messages wait for the pacer."""
        while True:
            await asyncio.sleep(self.lease.renew_every.total_seconds())
            now = self.clock()
            try:
                kept = await asyncio.to_thread(self._renew, ids, now)
                await self._beat(now)
            except Exception:
                # Not renewed: the claims run out on their own schedule, and `may_send`
                # stops using them before they do.
                log.warning("could not renew %s claims", self.what, exc_info=True)
                continue
            # Not renewed: recorded already (no longer to send) or taken over (not ours).
            lost = self.claims.lost | (set(ids) - kept)
            self.claims = Claims(valid_until=now + self.lease.lease, lost=frozenset(lost))
            self.last_progress = time.monotonic()
