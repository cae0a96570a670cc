"""The stand-in's world: chats, users, the bot's messages, queued updates, and waiting on them.

``ChatState`` holds everything the other parts of ``StandIn`` read and change, and the
read-only views tests use (``chat``, ``last``, ``calls_to``, ``wait_for``, ``settle``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from miliabot_tg.standin.faults import Misbehaviour
from miliabot_tg.standin.records import JSON, AnsweredCallback, BotMessage, Call

_T = TypeVar("_T")


def unix_now() -> int:
    return int(time.time())


class Signal:
    """Broadcast wake-up: ``wait`` returns True at the next ``fire`` or False on timeout."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        event = self._event
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return False
        return True


class ChatState(Misbehaviour):
    """What the bot did, the simulated world it did it in, and the updates waiting for it."""

    def __init__(
        self,
        token: str,
        *,
        bot_username: str,
        bot_first_name: str,
        global_rate: float | None,
        chat_rate: float | None,
        clock: Callable[[], float],
    ) -> None:
        bot_id, colon, secret = token.partition(":")
        if not (bot_id.isdigit() and colon and secret):
            raise ValueError(f"not a bot token: {token!r}")
        super().__init__(global_rate=global_rate, chat_rate=chat_rate, clock=clock)
        self.token = token
        self.bot_user: JSON = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        # What the bot did.
        self.calls: list[Call] = []
        self.answered_callbacks: list[AnsweredCallback] = []
        self.commands: list[tuple[str, str]] = []  # as of the last setMyCommands
        self._messages: dict[int, dict[int, BotMessage]] = {}
        self._user_messages: dict[int, set[int]] = {}
        self._user_message_json: dict[int, dict[int, JSON]] = {}  # what users sent, as sent
        self._next_message_id: dict[int, int] = {}
        self._command_sets: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._commands_key: tuple[str, str] | None = None
        # The simulated world.
        self._chats: dict[int, JSON] = {}
        self._users: dict[int, JSON] = {}
        self._last_sender: dict[int, int] = {}
        self._open_queries: set[str] = set()
        self._ids = itertools.count(1)
        self._webhook: JSON | None = None
        self._webhook_error: tuple[int, str] | None = (
            None  # (unix time, message), for getWebhookInfo
        )
        self._allowed_updates: frozenset[str] | None = None
        # Updates for getUpdates.
        self._pending: deque[JSON] = deque()
        self._last_update_id = 0
        self._delivered_through = 0  # getUpdates has returned the updates up to here
        self._poll_generation = 0
        # Plumbing.
        self._activity = Signal()  # any call arriving or finishing, any update queued
        self._updates = Signal()  # long-polls recheck
        self._stopping = asyncio.Event()
        self._in_flight = 0  # non-getUpdates calls being answered
        self._waiting_polls = 0  # getUpdates calls waiting for an update
        self._last_activity = time.monotonic()

    # --- inspection ----------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def chat(self, chat_id: int) -> list[BotMessage]:
        """The bot's messages in a chat, oldest first, deleted ones included (flagged)."""
        return list(self._messages.get(chat_id, {}).values())

    def last(self, chat_id: int) -> BotMessage | None:
        """The bot's newest message in a chat that is not deleted."""
        return next((m for m in reversed(self.chat(chat_id)) if not m.deleted), None)

    def commands_for(
        self, scope: JSON | None = None, language_code: str = ""
    ) -> list[tuple[str, str]]:
        return list(self._command_sets.get(self._commands_scope(scope, language_code), []))

    @property
    def pending_updates(self) -> int:
        """Queued updates not yet confirmed by a getUpdates offset."""
        return len(self._pending)

    @property
    def waiting_polls(self) -> int:
        """getUpdates calls currently long-polling (waiting for an update)."""
        return self._waiting_polls

    @property
    def webhook_url(self) -> str | None:
        return self._webhook["url"] if self._webhook else None

    def describe(self, last: int = 12) -> str:
        lines = [f"  {call}" for call in self.calls[-last:]] or ["  (no calls yet)"]
        unfetched = self._unfetched()
        return (
            f"recent calls ({len(self.calls)} in all):\n"
            + "\n".join(lines)
            + f"\n{unfetched} queued update(s) not yet fetched by getUpdates"
        )

    # --- waiting -------------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], _T | None],
        timeout: float = 5.0,
    ) -> _T:
        """Return the predicate's first truthy value, rechecking on every call and update."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await self._activity.wait(remaining):
                if result := predicate():
                    return result
                raise TimeoutError(f"condition not met within {timeout}s; {self.describe()}")
        return result

    async def settle(self, *, quiet: float = 0.05, timeout: float = 5.0) -> None:
        """Return once every queued update was fetched and, apart from getUpdates, no call has
        arrived or been in progress for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            busy = self._in_flight > 0 or self._unfetched() > 0
            idle = now - self._last_activity
            if not busy and idle >= quiet:
                return
            remaining = deadline - now
            if remaining <= 0:
                raise TimeoutError(f"the bot did not settle within {timeout}s; {self.describe()}")
            await self._activity.wait(remaining if busy else min(quiet - idle, remaining))

    # --- updates, chats and messages -----------------------------------------------------------

    def _queue(self, kind: str, payload: JSON) -> int:
        self._last_update_id += 1
        self._pending.append({"update_id": self._last_update_id, kind: payload})
        self._updates.fire()
        self._activity.fire()
        return self._last_update_id

    def _drop_pending(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.popleft()

    def _unfetched(self) -> int:
        """Queued updates that no getUpdates has returned yet (cheap when there are none)."""
        if not self._pending or self._pending[-1]["update_id"] <= self._delivered_through:
            return 0
        return sum(1 for u in self._pending if u["update_id"] > self._delivered_through)

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 0) + 1
        self._next_message_id[chat_id] = message_id
        return message_id

    def _chat(self, chat_id: int) -> JSON:
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_id > 0:
                first_name = self._users.get(chat_id, {}).get("first_name", f"User {chat_id}")
                chat = {"id": chat_id, "type": "private", "first_name": first_name}
            else:
                kind = "supergroup" if chat_id < -1_000_000_000_000 else "group"
                chat = {"id": chat_id, "type": kind, "title": f"Test {kind} {chat_id}"}
            self._chats[chat_id] = chat
        return chat

    def _message_json(self, message: BotMessage) -> JSON:
        chat = self._chat(message.chat_id)
        out: JSON = {"message_id": message.message_id, "date": message.date, "chat": chat}
        if chat["type"] == "channel":
            out["sender_chat"] = chat
        else:
            out["from"] = dict(self.bot_user)
        if message.edit_date is not None:
            out["edit_date"] = message.edit_date
        if message.document is not None:
            out["document"] = {
                "file_id": f"BQACAgIAAxkBAAI-standin-doc-{message.message_id}",
                "file_unique_id": f"doc-{message.chat_id}-{message.message_id}",
                "file_name": message.document,
                "mime_type": message.document_type or "application/octet-stream",
                "file_size": len(message.document_data or b""),
            }
        if message.photo is not None:
            file_id = message.photo_file_id
            size = len(message.photo_data or b"") or 65_536
            out["photo"] = [
                {"file_id": f"{file_id}-s", "file_unique_id": f"{file_id}-su", "width": 90,
                 "height": 90, "file_size": 1_024},
                {"file_id": file_id, "file_unique_id": f"{file_id}-u", "width": 1280,
                 "height": 1280, "file_size": size},
            ]  # fmt: skip
            if message.caption is not None:
                out["caption"] = message.plain
                if message.entities:
                    out["caption_entities"] = message.entities
        elif message.document is not None:
            if message.caption is not None:
                out["caption"] = message.plain
                if message.entities:
                    out["caption_entities"] = message.entities
        else:
            out["text"] = message.plain
            if message.entities:
                out["entities"] = message.entities
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            out["reply_markup"] = message.reply_markup  # Telegram only echoes inline keyboards
        return out

    @staticmethod
    def _commands_scope(scope: object, language_code: object) -> tuple[str, str]:
        key = json.dumps(scope, sort_keys=True) if scope else '{"type": "default"}'
        return key, language_code if isinstance(language_code, str) else ""
