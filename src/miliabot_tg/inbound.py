"""Incoming updates: one user can neither flood the bot nor hold up anyone else's answer.

Two parts, wired in by the composition root:

* ``Throttle``: at most ``limit`` updates per ``window`` from one user, counted as they arrive.
  Beyond that the user gets one friendly "slow down" note per window and the rest is dropped
  before any other work: no database write, no search, no reply (a pressed button is still
  answered, bare, so the phone stops its spinner).
* ``LaneProcessor``: python-telegram-bot's update processor, with a lane per chat. A chat's
  updates run one at a time, in order, and only the one at the head of its lane takes one of
  the shared processing slots. A reply waiting for its chat's 1 message a second therefore
  holds at most one slot, and a flooder's backlog waits in their own lane, holding none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final

from telegram import Update
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    BaseUpdateProcessor,
    CallbackContext,
    TypeHandler,
)

log = logging.getLogger(__name__)

# Updates processed at once, across all chats: python-telegram-bot's own default.
SLOTS: Final = 256
# The throttle runs before every other handler group (record_user is -1, the reminders' own
# command handling -2). Only one handler runs per group, so the guard needs one to itself.
GUARD_GROUP: Final = -1_000_000
# PTB's own semaphore must never be what an update waits on: it is taken before our lanes, so
# a flooder's queued updates would fill it. PTB makes a task per update whatever this is.
_UNBOUNDED: Final = 2**31 - 1

SLOW_DOWN: Final = (
    "🐢 <b>That's a lot of messages at once!</b>\n"
    "I'll skip the rest for a few seconds so everyone gets an answer. "
    "Please send one thing at a time, and I'm all yours again."
)
# A pressed button's answer is plain text, at most 200 characters.
SLOW_DOWN_BUTTON: Final = "🐢 That's a lot at once! Give me a few seconds, then try again."


class Verdict(Enum):
    """What becomes of one incoming update."""

    ALLOW = "allow"
    NOTE = "note"  # the first one over the limit: say "slow down" once this window
    SILENT = "silent"  # over the limit and already told: drop it


@dataclass(slots=True)
class _Window:
    start: float
    count: int = 0


class Throttle:
    """At most `limit` updates per user in a fixed `window` of seconds, from their first one.

    Windows are kept in the order they started, so the expired ones are always at the front
    and are forgotten as new updates arrive: memory holds only the users of the last window.
    """

    def __init__(self, *, limit: int, window: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._windows: dict[int, _Window] = {}

    def __len__(self) -> int:
        """How many users' windows are remembered."""
        return len(self._windows)

    def admit(self, key: int) -> Verdict:
        """Count one update from `key` (a user) now and say what to do with it."""
        now = self._clock()
        self._prune(now)
        found = self._windows.get(key)
        if found is None or not found.start <= now < found.start + self.window:
            # A new window goes to the back, which keeps the dict in order of start.
            self._windows.pop(key, None)
            found = self._windows[key] = _Window(now)
        found.count += 1
        if found.count <= self.limit:
            return Verdict.ALLOW
        return Verdict.NOTE if found.count == self.limit + 1 else Verdict.SILENT

    def _prune(self, now: float) -> None:
        while self._windows:
            key = next(iter(self._windows))
            start = self._windows[key].start
            if start <= now < start + self.window:
                return
            del self._windows[key]


def sender(update: Update) -> int | None:
    """Whose update this is, for the throttle: the user, else the chat (a channel post)."""
    if update.effective_user is not None:
        return update.effective_user.id
    return update.effective_chat.id if update.effective_chat is not None else None


def lane(update: Update) -> int | None:
    """The chat an update will be answered in: replies to one chat are paced together."""
    if update.effective_chat is not None:
        return update.effective_chat.id
    return update.effective_user.id if update.effective_user is not None else None


class Inbound:
    """The throttle's verdicts, decided as updates arrive and carried out before any handler."""

    def __init__(self, *, limit: int, window: float, clock: Callable[[], datetime]) -> None:
        self.throttle = Throttle(limit=limit, window=window, clock=lambda: clock().timestamp())
        self._verdicts: dict[int, Verdict] = {}

    def admit(self, update: object) -> Verdict:
        """Judge an update as it arrives; the guard carries the verdict out later."""
        if not isinstance(update, Update):
            return Verdict.ALLOW
        verdict = self._verdicts[update.update_id] = self._judge(update)
        return verdict

    def done(self, update: object) -> None:
        """Forget the verdict of an update that never reached the guard."""
        if isinstance(update, Update):
            self._verdicts.pop(update.update_id, None)

    def _judge(self, update: Update) -> Verdict:
        key = sender(update)
        # Blocking and unblocking the bot are Telegram's reports, not requests: never dropped.
        if key is None or update.my_chat_member is not None:
            return Verdict.ALLOW
        verdict = self.throttle.admit(key)
        if verdict is Verdict.NOTE:
            log.info(
                "%s sent over %d updates in %gs; dropping the rest of this window",
                key,
                self.throttle.limit,
                self.throttle.window,
            )
        return verdict

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Put the guard before every other handler group."""
        app.add_handler(TypeHandler(Update, self.guard), group=GUARD_GROUP)

    async def guard(self, update: Update, context: CallbackContext[Any, Any, Any, Any]) -> None:
        """Let an update through, or stop it here after at most one cheap answer."""
        # Judged on arrival by the LaneProcessor; an Application without it is judged now.
        verdict = self._verdicts.pop(update.update_id, None) or self._judge(update)
        if verdict is Verdict.ALLOW:
            return
        try:
            await _answer(update, context.bot, verdict)
        except TelegramError as exc:
            log.info("could not answer a throttled update: %s", type(exc).__name__)
        raise ApplicationHandlerStop


async def _answer(update: Update, bot: Any, verdict: Verdict) -> None:
    """The one answer a throttled update gets, if any."""
    if update.callback_query is not None:
        note = SLOW_DOWN_BUTTON if verdict is Verdict.NOTE else None
        await update.callback_query.answer(note)
        return
    chat = update.effective_chat
    # Only in a private chat: a note in a group would be more noise from the bot.
    if verdict is Verdict.NOTE and chat is not None and chat.type == ChatType.PRIVATE:
        await bot.send_message(chat.id, SLOW_DOWN)


@dataclass(slots=True)
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # updates in this lane, waiting or running


class LaneProcessor(BaseUpdateProcessor):
    """Updates of one chat in order, one at a time; only the running one holds a slot."""

    def __init__(self, inbound: Inbound, *, slots: int = SLOTS) -> None:
        super().__init__(_UNBOUNDED)
        self.inbound = inbound
        self.slots = slots
        self._slots = asyncio.Semaphore(slots)
        self._lanes: dict[int, _Lane] = {}
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def lanes(self) -> int:
        """Chats with updates waiting or running."""
        return len(self._lanes)

    async def idle(self) -> None:
        """Return once no update is waiting or being processed."""
        await self._idle.wait()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Judge the update as it arrives, then run it in its chat's lane."""
        self._busy += 1
        self._idle.clear()
        try:
            verdict = self.inbound.admit(update)
            key = lane(update) if isinstance(update, Update) else None
            wordless = isinstance(update, Update) and update.callback_query is None
            if verdict is Verdict.SILENT and wordless:
                # Dropped without a word: the guard only stops it, so no lane and no slot.
                await coroutine
            elif key is None:
                async with self._slots:
                    await coroutine
            else:
                await self._in_lane(key, coroutine)
        finally:
            self.inbound.done(update)
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _in_lane(self, key: int, coroutine: Awaitable[Any]) -> None:
        found = self._lanes.get(key)
        if found is None:
            found = self._lanes[key] = _Lane()
        found.users += 1
        try:
            async with found.lock, self._slots:  # asyncio.Lock wakes waiters in order
                await coroutine
        finally:
            found.users -= 1
            if not found.users:
                del self._lanes[key]

    async def initialize(self) -> None:
        """Nothing to set up: lanes come and go with their chats."""

    async def shutdown(self) -> None:
        """Nothing to free: an empty lane is deleted as soon as it empties."""
