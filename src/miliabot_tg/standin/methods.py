"""The Bot API methods the stand-in answers, each checked and recorded as Telegram would.

Deliberate limits: no inline messages. A set webhook makes getUpdates answer 409; updates
are posted to it only once the test says where it is served (``webhooks.py``).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from miliabot_tg.standin.records import (
    JSON,
    NOT_MODIFIED,
    AnsweredCallback,
    ApiError,
    BotMessage,
    Upload,
    bad,
)
from miliabot_tg.standin.state import ChatState, unix_now
from miliabot_tg.standin.validation import (
    CHAT_ACTIONS,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    check_commands,
    check_markup,
    message_text,
)

Handler = Callable[[JSON], object]

_WEBHOOK_CONFLICT: Final = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)
_POLL_CONFLICT: Final = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)


class BotApiMethods(ChatState):
    """The part of ``StandIn`` that carries out the bot's calls on the simulated world."""

    def _method_table(self) -> dict[str, Handler]:
        """Every method but getUpdates (which waits, so the server awaits it), by name."""
        return {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "copyMessage": self._copy_message,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendChatAction": self._send_chat_action,
            "close": lambda p: True,
            "logOut": lambda p: True,
        }

    def _chat_id(self, params: JSON) -> int:
        """The chat a call names, after the forget/block checks."""
        value = params.get("chat_id")
        if value is None or value == "":
            raise bad("chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:].lower()
            found = [c for c in self._chats.values() if c.get("username", "").lower() == name]
            value = found[0]["id"] if found else None
        if not isinstance(value, int) or isinstance(value, bool) or value in self._forgotten:
            raise bad("chat not found")
        if value in self._blocked:
            reason = {
                "private": "bot was blocked by the user",
                "group": "bot was kicked from the group chat",
                "supergroup": "bot was kicked from the supergroup chat",
                "channel": "bot is not a member of the channel chat",
            }[self._chat(value)["type"]]
            raise ApiError(403, f"Forbidden: {reason}")
        return value

    def _get_me(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _send_message(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        plain, entities = message_text(params, "text", MAX_TEXT_LENGTH)
        markup = check_markup(params.get("reply_markup"))
        self._check_rate(chat_id, params)
        parse_mode = params.get("parse_mode")
        message = BotMessage(
            chat_id,
            self._new_message_id(chat_id),
            unix_now(),
            text=params["text"],
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
            reply_markup=markup,
            plain=plain,
            entities=entities,
        )
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        return self._message_json(message)

    def _send_photo(self, params: JSON) -> JSON:
        chat_id = self._chat_id(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo.removeprefix("attach://"))
        if photo is None or photo == "":
            raise bad("there is no photo in the request")
        if isinstance(photo, Upload):
            sent, data = f"upload:{photo.filename}", photo.data
            file_id = f"AgACAgIAAxkBAAI-standin-{next(self._ids)}"
        elif isinstance(photo, str) and not any(c.isspace() for c in photo):
            sent, data = photo, None
            is_url = photo.startswith(("http://", "https://"))
            file_id = f"AgACAgIAAxkBAAI-standin-{next(self._ids)}" if is_url else photo
        else:
            raise bad("wrong file identifier/HTTP URL specified")
        return self._send_file(chat_id, params, photo=sent, photo_file_id=file_id, photo_data=data)

    def _send_document(self, params: JSON) -> JSON:
        """Only uploads (multipart) are accepted: the bot has no files on Telegram to resend."""
        chat_id = self._chat_id(params)
        document = params.get("document")
        if isinstance(document, str) and document.startswith("attach://"):
            document = params.get(document.removeprefix("attach://"))
        if document is None or document == "":
            raise bad("there is no document in the request")
        if not isinstance(document, Upload):
            raise bad("wrong file identifier/HTTP URL specified")
        if not document.data:
            raise bad("file must be non-empty")
        return self._send_file(
            chat_id,
            params,
            document=document.filename,
            document_data=document.data,
            document_type=document.content_type,
        )

    def _send_file(self, chat_id: int, params: JSON, **file: Any) -> JSON:
        """The part of sendPhoto and sendDocument after the file: caption, markup, rate."""
        caption = params.get("caption")
        plain, entities = "", list[JSON]()
        if isinstance(caption, str) and caption:
            plain, entities = message_text(params, "caption", MAX_CAPTION_LENGTH)
        markup = check_markup(params.get("reply_markup"))
        self._check_rate(chat_id, params)  # paid broadcasts (allow_paid_broadcast) included
        parse_mode = params.get("parse_mode")
        message = BotMessage(
            chat_id,
            self._new_message_id(chat_id),
            unix_now(),
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
            reply_markup=markup,
            plain=plain,
            entities=entities,
            caption=caption if isinstance(caption, str) and caption else None,
            **file,
        )
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        return self._message_json(message)

    def _copy_message(self, params: JSON) -> JSON:
        """Copy a text or photo message (a user's or the bot's) into another chat, as is.

        Like Telegram, the copy keeps text, caption and their entities but not the original's
        buttons (``reply_markup`` gives it its own); a new ``caption`` replaces a photo's.
        The stand-in copies text and photo messages only.
        """
        chat_id = self._chat_id(params)
        source = self._copy_source(params)
        markup = check_markup(params.get("reply_markup"))
        message = BotMessage(chat_id, 0, unix_now(), reply_markup=markup)
        if "photo" in source:
            file_id = source["photo"][-1]["file_id"]
            message.photo = message.photo_file_id = file_id
            if isinstance(params.get("caption"), str):
                message.plain, message.entities = message_text(
                    params, "caption", MAX_CAPTION_LENGTH
                )
                message.caption = params["caption"] or None
            elif source.get("caption"):
                message.caption = message.plain = source["caption"]
                message.entities = list(source.get("caption_entities", []))
        elif isinstance(source.get("text"), str):
            message.text = message.plain = source["text"]
            message.entities = list(source.get("entities", []))
        else:
            raise bad("the stand-in copies only text and photo messages")
        self._check_rate(chat_id, params)
        message.message_id = self._new_message_id(chat_id)
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        return {"message_id": message.message_id}

    def _copy_source(self, params: JSON) -> JSON:
        from_chat = params.get("from_chat_id")
        message_id = params.get("message_id")
        if not isinstance(from_chat, int) or from_chat not in self._chats:
            raise bad("chat not found")
        if not isinstance(message_id, int):
            raise bad("message identifier is not specified")
        users = self._user_messages.get(from_chat, set())
        if message_id in users:
            return self._user_message_json[from_chat][message_id]
        original = self._messages.get(from_chat, {}).get(message_id)
        if original is None or original.deleted:
            raise bad("message to copy not found")
        return self._message_json(original)

    def _target(self, params: JSON, action: str) -> BotMessage:
        """The bot message an edit/delete names (``action`` is "edit" or "delete")."""
        if params.get("inline_message_id"):
            raise bad("inline messages are not supported by the stand-in")
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise bad("message identifier is not specified")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            if action == "edit" and message_id in self._user_messages.get(chat_id, ()):
                raise bad("message can't be edited")
            raise bad(f"message to {action} not found")
        return message

    def _edit_message_text(self, params: JSON) -> JSON:
        message = self._target(params, "edit")
        if message.photo is not None:
            raise bad("there is no text in the message to edit")
        plain, entities = message_text(params, "text", MAX_TEXT_LENGTH)
        markup = check_markup(params.get("reply_markup"), inline_only=True)
        if (plain, entities, markup) == (message.plain, message.entities, message.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        parse_mode = params.get("parse_mode")
        message.text, message.plain, message.entities = params["text"], plain, entities
        message.parse_mode = parse_mode if isinstance(parse_mode, str) else None
        message.reply_markup = markup  # like Telegram: no reply_markup removes the keyboard
        return self._edited(message)

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._target(params, "edit")
        markup = check_markup(params.get("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        message.reply_markup = markup
        return self._edited(message)

    def _edited(self, message: BotMessage) -> JSON:
        message.edits += 1
        message.edit_date = unix_now()
        return self._message_json(message)

    def _delete_message(self, params: JSON) -> bool:
        chat_id = self._chat_id(params)
        theirs = self._user_messages.get(chat_id, set())
        if params.get("message_id") in theirs:
            theirs.discard(params["message_id"])
            return True
        self._target(params, "delete").deleted = True
        return True

    def _answer_callback_query(self, params: JSON) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._open_queries:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise bad("MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        self.answered_callbacks.append(
            AnsweredCallback(
                query_id,
                text if isinstance(text, str) else None,
                bool(params.get("show_alert")),
                params.get("url"),
                int(params.get("cache_time") or 0),
            )
        )
        return True

    def _set_my_commands(self, params: JSON) -> bool:
        commands = check_commands(params.get("commands"))
        key = self._commands_scope(params.get("scope"), params.get("language_code"))
        self._command_sets[key] = commands
        self._commands_key, self.commands = key, list(commands)
        return True

    def _get_my_commands(self, params: JSON) -> list[JSON]:
        key = self._commands_scope(params.get("scope"), params.get("language_code"))
        return [{"command": c, "description": d} for c, d in self._command_sets.get(key, [])]

    def _delete_my_commands(self, params: JSON) -> bool:
        key = self._commands_scope(params.get("scope"), params.get("language_code"))
        self._command_sets.pop(key, None)
        if key == self._commands_key:
            self.commands = []
        return True

    def _send_chat_action(self, params: JSON) -> bool:
        self._chat_id(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise bad("wrong parameter action in request")
        return True

    def _set_allowed_updates(self, params: JSON) -> None:
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(map(str, allowed)) or None

    def _set_webhook(self, params: JSON) -> bool:
        url = params.get("url") or ""
        if not isinstance(url, str) or (url and not url.startswith("https://")):
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._drop_pending()
        self._set_allowed_updates(params)
        max_connections = params.get("max_connections")
        secret = params.get("secret_token") or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad("secret token contains unallowed characters")
        self._webhook = (
            {"url": url, "max_connections": max_connections or 40, "secret": secret}
            if url
            else None
        )
        self._webhook_error = None
        self._updates.fire()  # waiting long-polls now conflict
        return True

    def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates"):
            self._drop_pending()
        self._webhook = None
        return True

    def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook:
            info["max_connections"] = self._webhook["max_connections"]
            if self._allowed_updates:
                info["allowed_updates"] = sorted(self._allowed_updates)
            if self._webhook_error is not None:
                at, message = self._webhook_error
                info |= {"last_error_date": at, "last_error_message": message}
        return info

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self._webhook:
            raise ApiError(409, _WEBHOOK_CONFLICT)
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates.fire()  # an older long-poll still waiting is terminated, like Telegram
        offset, limit, timeout = params.get("offset"), params.get("limit"), params.get("timeout")
        limit = min(max(limit, 1), 100) if isinstance(limit, int) else 100
        timeout = max(float(timeout), 0.0) if isinstance(timeout, int | float) else 0.0
        self._set_allowed_updates(params)
        if isinstance(offset, int) and offset > 0:
            while self._pending and self._pending[0]["update_id"] < offset:
                self._pending.popleft()
        elif isinstance(offset, int) and offset < 0:
            self._drop_pending(keep=-offset)
        deadline = time.monotonic() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, _POLL_CONFLICT)
            if self._webhook:
                raise ApiError(409, _WEBHOOK_CONFLICT)
            batch = self._fetchable(limit)
            if batch:
                self._delivered_through = max(self._delivered_through, batch[-1]["update_id"])
                self._last_activity = time.monotonic()
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                return []
            self._waiting_polls += 1
            self._activity.fire()
            try:
                await self._updates.wait(remaining)
            finally:
                self._waiting_polls -= 1

    def _fetchable(self, limit: int) -> list[JSON]:
        allowed = self._allowed_updates
        if allowed is not None:  # updates of other kinds are dropped, never delivered
            kept = [u for u in self._pending if not allowed.isdisjoint(u.keys())]
            if len(kept) != len(self._pending):
                self._pending = deque(kept)
        return list(itertools.islice(self._pending, limit))
