"""Pacing for every message the bot sends: one python-telegram-bot rate limiter.

Telegram allows a bot about 30 messages a second overall, about 1 a second in a private chat
and about 20 a minute in a group; beyond that it answers 429 with ``retry_after``. ``Pacer`` is
plugged in with ``ApplicationBuilder().rate_limiter(Pacer())``, so replies, reminders and
broadcasts all pass through the same queue::

    await bot.send_message(chat_id, text, rate_limit_args=PaceArgs(Priority.BROADCAST))

* Paced: the message-sending endpoints (``send*`` except ``sendChatAction``, ``copyMessage(s)``,
  ``forwardMessage(s)``). Everything else (answers, edits, setMyCommands...) goes straight
  through; PTB itself never hands ``getUpdates`` to a rate limiter.
* Global: fixed spacing of ``1 / global_rate`` between paced sends, so the burst is a single
  message. A token bucket would allow a second's worth at once, but then a broadcast could
  take the whole burst and make a reply wait up to a second; with spacing it holds one slot.
* Per chat: the next send to a chat starts no sooner than ``1 / chat_rate`` (private chats,
  positive ids) or ``1 / group_rate`` (groups and channels, negative ids or ``@names``) after
  the previous one to that chat *finished*. Measuring from the answer rather than from the
  start means network jitter cannot bring two messages closer at Telegram's end, and it keeps
  the messages to one chat in order (one in flight per chat).
* Priorities: requests wait in one queue ordered by (``Priority``, arrival); the best request
  whose chat is free gets the next global slot. A request waiting for its chat's spacing does
  not hold up other chats, and a reply overtakes a broadcast still queued for the same chat.
* In flight: at most ``max_in_flight`` paced sends are on the wire at once, and a request takes
  that slot only when it is granted. A request still waiting (for its chat's spacing, or behind
  better ones) holds nothing, so a user with fifty reminders at one minute cannot starve the
  rest of a batch.
* A last look: ``PaceArgs.go_ahead`` is asked at the moment a request is granted, just before it
  goes on the wire; if it says no, the request is dropped with ``SendAbandonedError``. The
  dispatcher uses it to never send on a claim that may have expired while it waited.
* 429: ``RetryAfter`` pauses all paced traffic for ``retry_after`` seconds (Telegram's flood
  control is per bot), then the request is retried, at most ``max_retries`` times, after which
  the ``RetryAfter`` is re-raised so the caller can reschedule. Other errors pass unchanged.

Why not PTB's ``AIORateLimiter``: it nearly fits (an overall limit, a per-group limit, a global
halt on ``RetryAfter``), but it has no per-private-chat limit and no priorities, so a broadcast
queued first would delay every reply and reminder behind it.

Only one task sleeps: the dispatcher that hands out slots. That keeps the logic in one place
and lets tests drive the pacer with a fake clock and a fake ``sleep``.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import itertools
import math
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from telegram.error import NetworkError, RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

__all__ = ["PaceArgs", "PaceStats", "Pacer", "PacerClosedError", "Priority", "SendAbandonedError"]

_Result = bool | dict[str, Any] | list[dict[str, Any]]
_ChatKey = int | str

# Paced besides every ``send*`` endpoint; sendChatAction ("typing...") is not a message.
_ALSO_PACED: Final = frozenset({"copyMessage", "copyMessages", "forwardMessage", "forwardMessages"})
# A chat whose spacing has run out behaves exactly like one never seen, so it can be forgotten;
# sweeping once a minute bounds the table by the chats served in the last minute.
_SWEEP_EVERY: Final = 60.0


class Priority(IntEnum):
    """Who is waiting for the message; lower values get global capacity first."""

    INTERACTIVE = 0  # a reply to something a user just did
    REMINDER = 1
    BROADCAST = 2


@dataclass(frozen=True, slots=True)
class PaceArgs:
    """``rate_limit_args`` for one request.

    A dataclass instance is always truthy, which matters: ExtBot silently drops falsy
    ``rate_limit_args``, so a bare ``Priority.INTERACTIVE`` (0) or ``max_retries=0`` as an int
    would never arrive here.
    """

    priority: Priority = Priority.INTERACTIVE
    max_retries: int | None = None  # None: the Pacer's; 0: never wait on a 429, re-raise at once
    # Asked when the slot is granted, right before sending; False drops the request.
    go_ahead: Callable[[], bool] | None = None


@dataclass(slots=True)
class PaceStats:
    """Counters for benchmarks and logs."""

    sent: int = 0  # paced requests that succeeded
    wait_total: float = 0.0  # seconds paced requests waited for slots (429 pauses included)
    wait_max: float = 0.0  # the longest such wait of one request
    retries: int = 0  # requests repeated after a 429
    rate_limited: int = 0  # 429s (RetryAfter) seen
    paused_total: float = 0.0  # seconds all paced traffic was paused for 429s (overlaps once)


class SendAbandonedError(NetworkError):
    """``PaceArgs.go_ahead`` said no when the request's turn came; nothing was sent."""


class PacerClosedError(NetworkError):
    """A paced request was waiting, or arrived, after ``shutdown()``.

    A ``NetworkError`` so that callers treat it like any transient failure and try later.
    """


@dataclass(order=True, slots=True)
class _Ticket:
    priority: int
    seq: int  # arrival order; kept across retries so a retried request keeps its place
    chat: _ChatKey | None = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


@dataclass(slots=True)
class _Chat:
    busy: bool = False  # a send to this chat is in flight
    next_at: float = -math.inf  # earliest start of the next send to it


class Pacer(BaseRateLimiter[PaceArgs]):
    """Paces paced endpoints globally and per chat, by priority, and rides out 429s."""

    def __init__(
        self,
        *,
        global_rate: float = 30.0,
        chat_rate: float = 1.0,
        group_rate: float = 20 / 60,
        max_retries: int = 3,
        max_in_flight: int = 64,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if not (chat_rate > 0 and group_rate > 0):
            raise ValueError("chat_rate and group_rate must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self.global_rate = global_rate
        self.max_retries = max_retries
        self.stats = PaceStats()
        self._chat_gap = 1.0 / chat_rate
        self._group_gap = 1.0 / group_rate
        self._clock = clock  # None: the running loop's clock, looked up when needed
        self._sleep = sleep or asyncio.sleep
        self._queue: list[_Ticket] = []  # waiting for a slot, sorted by (priority, seq)
        self._seq = itertools.count()
        self._chats: dict[_ChatKey, _Chat] = {}
        self._last_grant = -math.inf
        self._paused_until = -math.inf
        self._last_sweep = -math.inf
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def global_rate(self) -> float:
        """Paced sends per second over all chats; settable, e.g. to share it between processes.

        A change applies from the next slot on.
        """
        return self._global_rate

    @global_rate.setter
    def global_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"global_rate must be positive, not {rate}")
        self._global_rate = rate

    @property
    def tracked_chats(self) -> int:
        """How many chats the pacer currently remembers (bounded by the last minute's chats)."""
        return len(self._chats)

    async def initialize(self) -> None:
        """Accept requests again after a ``shutdown()``; the dispatcher starts on first use."""
        self._closed = False

    async def shutdown(self) -> None:
        """Stop the dispatcher; waiting requests raise ``PacerClosedError``, as do new ones.

        Sends already in flight finish normally, but are not retried after a 429.
        """
        self._closed = True
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.cancel()
            await asyncio.wait({dispatcher})
        self._fail_waiters(PacerClosedError("the pacer was shut down"))

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, _Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: PaceArgs | None,
    ) -> _Result:
        """Send now if unpaced; else wait for a slot, send, and retry after 429s."""
        if not _is_paced(endpoint):
            return await callback(*args, **kwargs)
        pace = rate_limit_args or PaceArgs()
        max_retries = self.max_retries if pace.max_retries is None else pace.max_retries
        chat = _chat_key(data.get("chat_id"))
        seq = next(self._seq)
        waited = 0.0
        attempt = 0
        try:
            while True:
                waited += await self._acquire(pace.priority, seq, chat)
                try:
                    if pace.go_ahead is not None and not pace.go_ahead():
                        raise SendAbandonedError("the sender no longer wants this sent")
                    result = await callback(*args, **kwargs)
                except RetryAfter as exc:
                    self._pause(exc)
                    if attempt >= max_retries or self._closed:
                        raise
                    attempt += 1
                    self.stats.retries += 1
                    continue
                finally:
                    self._release(chat)
                self.stats.sent += 1
                return result
        finally:
            self.stats.wait_total += waited
            self.stats.wait_max = max(self.stats.wait_max, waited)

    # --- waiting for a slot -------------------------------------------------------------------

    async def _acquire(self, priority: int, seq: int, chat: _ChatKey | None) -> float:
        """Wait until the dispatcher grants a slot (the chat is then ours); return the wait."""
        if self._closed:
            raise PacerClosedError("the pacer was shut down")
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        started = self._now()
        ticket = _Ticket(priority, seq, chat, asyncio.get_running_loop().create_future())
        bisect.insort(self._queue, ticket)
        self._wake.set()
        try:
            await ticket.granted
        except asyncio.CancelledError:
            if ticket.granted.cancelled():  # still queued (unless shut down): leave the queue
                if ticket in self._queue:
                    self._queue.remove(ticket)
            else:  # granted in the same instant: give the chat back
                self._release(chat)
            raise
        return self._now() - started

    def _release(self, chat: _ChatKey | None) -> None:
        """A send to ``chat`` finished (or was abandoned): start its spacing from now."""
        self._in_flight -= 1
        if chat is not None and (state := self._chats.get(chat)) is not None:
            state.busy = False
            state.next_at = self._now() + self._gap(chat)
        self._wake.set()

    def _pause(self, exc: RetryAfter) -> None:
        self.stats.rate_limited += 1
        now = self._now()
        until = max(self._paused_until, now + _seconds(exc))
        self.stats.paused_total += until - max(self._paused_until, now)
        self._paused_until = until
        self._wake.set()

    # --- the dispatcher -----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Hand out global slots, one per ``1 / global_rate``, best waiting request first."""
        try:
            while True:
                self._wake.clear()
                now = self._now()
                start = max(self._last_grant + 1.0 / self._global_rate, self._paused_until)
                if not self._queue or self._in_flight >= self.max_in_flight:
                    # Nothing to grant, or the wire is full: a release or a request wakes us.
                    await self._wake.wait()
                elif now < start:
                    # Nothing may go sooner, whatever arrives meanwhile: no need to listen.
                    await self._sleep(start - now)
                elif (index := self._first_ready(now)) is not None:
                    self._grant(index, now)
                else:
                    # Every waiting request is held by its chat: wait for the first chat's
                    # spacing to run out, a busy chat's send to finish, or a new request.
                    await self._sleep_or_wake(self._first_chat_free(now) - now)
        except Exception as exc:  # a bug here must not leave senders waiting forever
            self._fail_waiters(exc)
            raise

    def _first_ready(self, now: float) -> int | None:
        """Index of the best queued request whose chat may be sent to now."""
        for index, ticket in enumerate(self._queue):
            if ticket.granted.done():  # cancelled; its task removes it on its next step
                continue
            state = None if ticket.chat is None else self._chats.get(ticket.chat)
            if state is None or (not state.busy and state.next_at <= now):
                return index
        return None

    def _first_chat_free(self, now: float) -> float:
        """When the first idle-but-spaced chat with a queued request frees up (inf: none)."""
        times = (
            state.next_at
            for ticket in self._queue
            if ticket.chat is not None
            and not ticket.granted.done()
            and (state := self._chats.get(ticket.chat)) is not None
            and not state.busy
        )
        return min(times, default=math.inf)

    def _grant(self, index: int, now: float) -> None:
        ticket = self._queue.pop(index)
        self._in_flight += 1
        if ticket.chat is not None:
            self._chats.setdefault(ticket.chat, _Chat()).busy = True
        self._last_grant = now
        ticket.granted.set_result(None)
        if now - self._last_sweep >= _SWEEP_EVERY:
            self._last_sweep = now
            self._chats = {k: c for k, c in self._chats.items() if c.busy or c.next_at > now}

    async def _sleep_or_wake(self, delay: float) -> None:
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        if delay < math.inf:
            waiters.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _fail_waiters(self, exc: BaseException) -> None:
        queue, self._queue = self._queue, []
        for ticket in queue:
            if not ticket.granted.done():
                ticket.granted.set_exception(exc)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _gap(self, chat: _ChatKey) -> float:
        return self._chat_gap if isinstance(chat, int) and chat > 0 else self._group_gap


def _is_paced(endpoint: str) -> bool:
    return (endpoint.startswith("send") and endpoint != "sendChatAction") or (
        endpoint in _ALSO_PACED
    )


def _chat_key(chat_id: object) -> _ChatKey | None:
    """The chat a request goes to: an int id, or a lower-cased ``@channelusername``."""
    if isinstance(chat_id, int) and not isinstance(chat_id, bool):
        return chat_id
    if isinstance(chat_id, str) and chat_id:
        try:
            return int(chat_id)
        except ValueError:
            return chat_id.lower()
    return None


def _seconds(exc: RetryAfter) -> float:
    """``retry_after`` in seconds: an int, or a timedelta when PTB_TIMEDELTA is set."""
    # Reading the int form warns on every access; we handle both forms, so it is only noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
