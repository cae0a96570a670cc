"""Simulated users: what test code does as a person in a chat, queued as updates for the bot.

These are plain (sync) methods; call them from the event loop's thread.
"""

from __future__ import annotations

import re
from typing import Final

from miliabot_tg.standin.records import JSON, BotMessage
from miliabot_tg.standin.state import ChatState, unix_now
from miliabot_tg.telegram_html import utf16_len

CHAT_TYPES: Final = frozenset({"private", "group", "supergroup", "channel"})
_COMMAND_RE: Final = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,64})?")


def _sorted(entities: list[JSON]) -> list[JSON]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


class ButtonNotFoundError(LookupError):
    """A simulated user pressed a button that the bot's message does not (or no longer) have."""


def _command_entities(text: str) -> list[JSON]:
    return [
        {
            "offset": utf16_len(text[: m.start()]),
            "length": utf16_len(m.group()),
            "type": "bot_command",
        }
        for m in _COMMAND_RE.finditer(text)
    ]


class SimulatedUsers(ChatState):
    """The part of ``StandIn`` that writes, shares locations and presses buttons as users."""

    def send_message(
        self,
        text: str,
        *,
        user_id: int = 1001,
        first_name: str = "Ann",
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        username: str | None = None,
        chat_title: str | None = None,
        entities: list[JSON] | None = None,
        reply_to: int | None = None,
    ) -> int:
        """A user (or, for chat_type "channel", the channel) writes ``text``; returns update_id.

        Commands anywhere in the text get bot_command entities, as on Telegram; `entities`
        adds formatting (UTF-16 offsets, e.g. from ``parse_html``). `reply_to` names a message
        in the same chat (the bot's or the user's) that this one replies to. Writing in a
        private chat unblocks the bot there (a user has to unblock a bot to write to it).
        """
        kind, message = self._incoming(
            user_id, first_name, chat_id, chat_type, language_code, username, chat_title
        )
        message["text"] = text
        if found := _sorted([*_command_entities(text), *(entities or [])]):
            message["entities"] = found
        self._reply(message, reply_to)
        return self._queue(kind, message)

    def send_photo(
        self,
        caption: str | None = None,
        *,
        caption_entities: list[JSON] | None = None,
        user_id: int = 1001,
        first_name: str = "Ann",
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to: int | None = None,
    ) -> int:
        """A user sends a photo, with an optional caption and its formatting; returns update_id."""
        kind, message = self._incoming(user_id, first_name, chat_id, chat_type, "en", None, None)
        file_id = f"AgACAgIAAxkBAAI-user-{next(self._ids)}"
        message["photo"] = [
            {"file_id": f"{file_id}-s", "file_unique_id": f"{file_id}-su", "width": 90,
             "height": 90, "file_size": 1_024},
            {"file_id": file_id, "file_unique_id": f"{file_id}-u", "width": 1280,
             "height": 1280, "file_size": 65_536},
        ]  # fmt: skip
        if caption:
            message["caption"] = caption
            if found := _sorted([*_command_entities(caption), *(caption_entities or [])]):
                message["caption_entities"] = found
        self._reply(message, reply_to)
        return self._queue(kind, message)

    def sent_by_users(self, chat_id: int) -> list[JSON]:
        """What simulated users sent in a chat, as the bot received it, oldest first."""
        kept = self._user_messages.get(chat_id, set())
        return [m for i, m in self._user_message_json.get(chat_id, {}).items() if i in kept]

    def message_sent_by_user(self, chat_id: int, message_id: int) -> JSON | None:
        """A message a simulated user sent (as the bot received it), unless it was deleted."""
        if message_id not in self._user_messages.get(chat_id, ()):
            return None
        return self._user_message_json.get(chat_id, {}).get(message_id)

    def _reply(self, message: JSON, reply_to: int | None) -> None:
        if reply_to is None:
            return
        chat_id = message["chat"]["id"]
        original = self.message_sent_by_user(chat_id, reply_to)
        if original is None:
            bot_message = self._messages.get(chat_id, {}).get(reply_to)
            if bot_message is None or bot_message.deleted:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            original = self._message_json(bot_message)
        # Like Telegram: the replied-to message comes without its own reply_to_message.
        message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}

    def forge_press(
        self,
        chat_id: int,
        callback_data: str,
        *,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> int:
        """Send a button press with any callback data, as a modified client could.

        The press is on the bot's newest message in the chat (or `message_id`), whatever
        buttons it has: for checking that the bot trusts nothing in callback data.
        """
        if message_id is None:
            last = self.last(chat_id)
            if last is None:
                raise ButtonNotFoundError(f"no bot message in chat {chat_id} to press on")
            message_id = last.message_id
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise ButtonNotFoundError(f"no bot message {message_id} in chat {chat_id}")
        return self._press(message, callback_data, chat_id, user_id)

    def send_location(
        self,
        latitude: float,
        longitude: float,
        *,
        user_id: int = 1001,
        first_name: str = "Ann",
        chat_id: int | None = None,
        chat_type: str = "private",
        language_code: str | None = "en",
        username: str | None = None,
        chat_title: str | None = None,
    ) -> int:
        kind, message = self._incoming(
            user_id, first_name, chat_id, chat_type, language_code, username, chat_title
        )
        message["location"] = {"latitude": latitude, "longitude": longitude}
        return self._queue(kind, message)

    def press_button(
        self, chat_id: int, message_id: int, callback_data: str, *, user_id: int | None = None
    ) -> int:
        """Press an inline button that exists on the current version of a bot message."""
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            state = "was deleted" if message else "does not exist"
            raise ButtonNotFoundError(f"bot message {message_id} in chat {chat_id} {state}")
        if callback_data not in message.callback_data():
            raise ButtonNotFoundError(
                f"bot message {message_id} in chat {chat_id} has no button with callback_data "
                f"{callback_data!r}; its buttons now: {message.buttons}"
            )
        return self._press(message, callback_data, chat_id, user_id)

    def _press(
        self, message: BotMessage, callback_data: str, chat_id: int, user_id: int | None
    ) -> int:
        if user_id is None:
            private = self._chat(chat_id)["type"] == "private"
            user_id = chat_id if private else self._last_sender.get(chat_id, 1001)
        user = self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "Ann"}
        query_id = str(4_000_000 + next(self._ids))
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": self._message_json(message),
            "chat_instance": str(chat_id),
            "data": callback_data,
        }
        return self._queue("callback_query", query)

    def press(
        self,
        chat_id: int,
        button_text: str,
        *,
        message_id: int | None = None,
        user_id: int | None = None,
    ) -> int:
        """Press the button labelled ``button_text`` on the latest bot message with buttons."""
        if message_id is None:
            with_buttons = [m for m in self.chat(chat_id) if not m.deleted and m.callback_data()]
            if not with_buttons:
                raise ButtonNotFoundError(f"no bot message in chat {chat_id} has inline buttons")
            message_id = with_buttons[-1].message_id
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None:
            raise ButtonNotFoundError(f"no bot message {message_id} in chat {chat_id}")
        for row in message.buttons:
            for text, target in row:
                if text == button_text and target in message.callback_data():
                    assert target is not None
                    return self.press_button(chat_id, message_id, target, user_id=user_id)
        buttons = message.buttons
        raise ButtonNotFoundError(
            f"no callback button {button_text!r} on bot message {message_id} in chat {chat_id}; "
            f"its buttons: {buttons}"
        )

    def queue_update(self, update: JSON) -> int:
        """Queue a raw update such as ``{"my_chat_member": {...}}``; returns its update_id."""
        if len(update) != 1:
            raise ValueError("an update has exactly one kind, e.g. {'message': {...}}")
        ((kind, payload),) = update.items()
        return self._queue(kind, payload)

    def _incoming(
        self,
        user_id: int,
        first_name: str,
        chat_id: int | None,
        chat_type: str,
        language_code: str | None,
        username: str | None,
        chat_title: str | None,
    ) -> tuple[str, JSON]:
        if chat_type not in CHAT_TYPES:
            raise ValueError(f"chat_type must be one of {sorted(CHAT_TYPES)}")
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        if chat_id is None:
            if chat_type != "private":
                raise ValueError(f"a {chat_type} message needs an explicit (negative) chat_id")
            chat_id = user_id
        chat: JSON = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
            if username:
                chat["username"] = username
            self._blocked.discard(chat_id)
        else:
            old_title = self._chats.get(chat_id, {}).get("title")
            chat["title"] = chat_title or old_title or f"Test {chat_type} {chat_id}"
        self._chats[chat_id] = chat
        message_id = self._new_message_id(chat_id)
        self._user_messages.setdefault(chat_id, set()).add(message_id)
        message: JSON = {"message_id": message_id, "date": unix_now(), "chat": chat}
        # Kept (the same dict, filled in by the caller) for copies and replies.
        self._user_message_json.setdefault(chat_id, {})[message_id] = message
        if chat_type == "channel":
            message["sender_chat"] = chat
            return "channel_post", message
        message["from"] = user
        self._last_sender[chat_id] = user_id
        return "message", message
