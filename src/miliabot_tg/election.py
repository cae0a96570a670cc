"""Which process fetches updates: one poller per PostgreSQL database, elected by a lock.

Telegram answers a second concurrent `getUpdates` with 409 Conflict, so of several bot
processes sharing one database exactly one may poll; all of them dispatch reminders and
broadcasts. The poller is whoever holds a session-level advisory lock
(`pg_try_advisory_lock`) on a connection of its own, held for as long as it polls:

* The others try to take the lock every `retry_every` seconds. When the poller's process
  dies its connection closes and PostgreSQL releases the lock at once; when its machine
  or network dies, the server's TCP keepalives (set on that session: probe after 5 s idle,
  every 2 s, give up after 3) end the session within about 11 s. Either way another
  process polls within 15 s.
* The poller checks its lock connection every `check_every` seconds. If a check fails or
  does not answer within `check_within`, it cannot prove it still holds the lock, so it
  stops polling at once, before the server could hand the lock to anyone else.
* A 409 from Telegram (someone else polls with this token) makes it stop polling, give
  the lock back and wait `after_conflict` seconds before trying again: one log line,
  not a storm.

SQLite means one process: it always polls and no election is held.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from miliabot_tg.db import postgres_connect_args

log = logging.getLogger(__name__)

# The advisory lock's key: "milia" in ASCII, so it reads as ours in pg_locks.
LOCK_KEY = 0x6D696C6961
# Server-side keepalives of the lock session: a vanished poller is let go within ~11 s.
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET statement_timeout = '3s'",
)


class Role(Enum):
    """What this process does with updates."""

    FOLLOWER = "follower"  # dispatches reminders and broadcasts only
    POLLER = "poller"  # also fetches updates


class PollerElection:
    """Hold the poller lock while polling; follow, retrying, otherwise.

    `start_polling` and `stop_polling` are the process's own (the Updater's start and
    stop); the election calls them as it wins and loses the lock.
    """

    def __init__(
        self,
        url: URL,
        *,
        start_polling: Callable[[], Awaitable[None]],
        stop_polling: Callable[[], Awaitable[None]],
        retry_every: float = 3.0,
        check_every: float = 3.0,
        check_within: float = 3.0,
        after_conflict: float = 30.0,
        key: int = LOCK_KEY,
    ) -> None:
        self._engine: Engine = create_engine(
            url, poolclass=NullPool, connect_args=postgres_connect_args(url)
        )
        self._start_polling, self._stop_polling = start_polling, stop_polling
        self.retry_every, self.check_every = retry_every, check_every
        self.check_within, self.after_conflict = check_within, after_conflict
        self._key = key
        self._conn: Connection | None = None
        self._conflict = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.role = Role.FOLLOWER
        self.terms = 0  # how many times this process has become the poller

    def start(self) -> None:
        """Begin taking part in the election, in the background."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="poller-election")

    async def run(self) -> None:
        """Follow until the lock is ours, poll while it stays ours; again and again."""
        log.info("several processes may share this database: electing the one that polls")
        while True:
            if not await self._try_to_lead():
                await asyncio.sleep(self.retry_every)
                continue
            self.role, self.terms = Role.POLLER, self.terms + 1
            self._conflict.clear()
            log.info("this process polls Telegram for updates (it holds the poller lock)")
            await self._start_polling()
            pause = await self._lead()
            await self._step_down()
            await asyncio.sleep(pause)

    def conflict(self) -> None:
        """Telegram said another getUpdates is running (409): stop polling, give way."""
        if self.role is Role.POLLER and not self._conflict.is_set():
            log.warning(
                "Telegram reports another process polling with this token (409 Conflict); "
                "this one stops polling and tries again in %.0f s",
                self.after_conflict,
            )
            self._conflict.set()

    async def close(self) -> None:
        """Stop taking part: stop polling if we were, then give the lock back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._step_down()
        self._engine.dispose()

    async def _try_to_lead(self) -> bool:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._lock), self.check_within * 2)
        except Exception as exc:
            log.warning("could not ask the database who polls (%s); trying again", _one_line(exc))
            self._forget_connection()
            return False

    def _lock(self) -> bool:
        if self._conn is None:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                for statement in _SESSION_SETTINGS:
                    conn.exec_driver_sql(statement)
            except Exception:
                conn.close()
                raise
            self._conn = conn
        taken = self._conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key})
        return bool(taken.scalar())

    async def _lead(self) -> float:
        """Check the lock until it is lost or given up; return how long to wait after."""
        while True:
            try:
                await asyncio.wait_for(self._conflict.wait(), self.check_every)
                return self.after_conflict
            except TimeoutError:
                pass
            try:
                await asyncio.wait_for(asyncio.to_thread(self._check), self.check_within)
            except Exception as exc:
                log.warning(
                    "lost the connection holding the poller lock (%s); stopping polling "
                    "at once, another process takes over",
                    _one_line(exc) or "no answer",
                )
                self._forget_connection()
                return self.retry_every

    def _check(self) -> None:
        conn = self._conn
        if conn is None:
            raise ConnectionError("no lock connection")
        conn.execute(text("SELECT 1")).scalar()

    async def _step_down(self) -> None:
        """Stop polling first, then release the lock: two processes never poll at once."""
        if self.role is Role.POLLER:
            self.role = Role.FOLLOWER
            try:
                await self._stop_polling()
            finally:
                log.info("this process no longer polls; it dispatches reminders and broadcasts")
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing the session releases the lock; a stuck close must not hold us up.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(conn.close), self.check_within)

    def _forget_connection(self) -> None:
        """Drop a connection that failed; closing it could hang, so a thread does it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            asyncio.get_running_loop().run_in_executor(None, _close_quietly, conn)


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.invalidate()


def elects(engine: Engine) -> bool:
    """Whether processes on this database elect a poller (PostgreSQL) or one polls (SQLite)."""
    return engine.dialect.name == "postgresql"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
