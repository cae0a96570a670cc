"""A loopback stand-in for the Telegram Bot API, for tests, the console and benchmarks.

The real python-telegram-bot ``Application`` runs against it unchanged::

    async with StandIn() as standin:
        app = ApplicationBuilder().token(DEFAULT_TOKEN).base_url(f"{standin.api_root}/bot").build()

It answers ``{api_root}/bot{token}/{method}`` (any HTTP verb; JSON, urlencoded, multipart or
query-string parameters; method names case-insensitive like Telegram) with Telegram's shapes:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "..."}``,
plus ``"parameters": {"retry_after": N}`` on 429. The HTTP status equals ``error_code``.

Test code acts as users through the plain (sync) methods ``send_message``, ``send_location``,
``press_button`` and ``press``; they must be called from the event loop's thread. Everything
the bot does is recorded in ``calls`` and as per-chat state (``chat``, ``last``).

Deliberate limits: no webhook delivery (a set webhook only makes getUpdates answer 409),
no inline messages, Markdown/MarkdownV2 texts are accepted unchecked (only HTML is validated),
and unlike Telegram (which shows unknown named HTML entities literally) ``&nbsp;`` and friends
are rejected, because a bot sending them is almost surely wrong. Rate limits apply to the
message-sending methods in ``RATE_LIMITED_METHODS`` only (edits, deletes, answers are free).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from aiohttp import web

from miliabot_tg.telegram_html import EntityParseError, parse_html, utf16_len

__all__ = [
    "DEFAULT_TOKEN",
    "RATE_LIMITED_METHODS",
    "AnsweredCallback",
    "ApiError",
    "BotMessage",
    "ButtonNotFoundError",
    "Call",
    "EntityParseError",
    "StandIn",
    "Upload",
    "parse_html",
]

JSON = dict[str, Any]
_T = TypeVar("_T")

DEFAULT_TOKEN: Final = "123456:TEST-standin-token"  # noqa: S105 (a fake, public test token)
RATE_LIMITED_METHODS: Final = frozenset({"sendMessage", "sendPhoto"})
MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
CHAT_TYPES: Final = frozenset({"private", "group", "supergroup", "channel"})
CHAT_ACTIONS: Final = frozenset(
    (
        "typing upload_photo record_video upload_video record_voice upload_voice "
        "upload_document choose_sticker find_location record_video_note upload_video_note"
    ).split()
)
_STATUS_TEXT: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """A Telegram-shaped failure, answered as ``{"ok": false, ...}`` with HTTP status ``code``."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class ButtonNotFoundError(LookupError):
    """A simulated user pressed a button that the bot's message does not (or no longer) have."""


def _strip(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Trim surrounding whitespace like Telegram does, keeping entity offsets right."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    end = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        stop = min(entity["offset"] + entity["length"] - lead, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


def _render(text: str, parse_mode: str | None, entities: object = None) -> tuple[str, list[JSON]]:
    """What Telegram would show: plain text plus entities, or a 400 ApiError."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        try:
            plain, found = parse_html(text)
        except EntityParseError as err:
            raise _bad(f"can't parse entities: {err}") from None
        return _strip(plain, found)
    if mode not in ("", "markdown", "markdownv2"):
        raise _bad("unsupported parse_mode")
    given = [e for e in entities if isinstance(e, dict)] if isinstance(entities, list) else []
    return _strip(text, given)


# --- reply markup -----------------------------------------------------------------------------

_BUTTON_ACTIONS: Final = frozenset(
    (
        "url callback_data web_app login_url switch_inline_query "
        "switch_inline_query_current_chat switch_inline_query_chosen_chat copy_text "
        "callback_game pay"
    ).split()
)


def _check_markup(markup: object, *, inline_only: bool = False) -> JSON | None:
    """Validate reply_markup like Telegram; returns it (None when absent)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        if inline_only or not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
            raise _bad("can't parse inline keyboard markup JSON object")
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad('can\'t parse inline keyboard button: Field "inline_keyboard" must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad('can\'t parse inline keyboard button: Field "text" must be a String')
            if not button["text"]:
                raise _bad("BUTTON_TEXT_INVALID")
            if not _BUTTON_ACTIONS & button.keys():
                raise _bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and (
                not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
            ):
                raise _bad("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and (
                not isinstance(url, str)
                or not url.startswith(("http://", "https://", "tg://"))
                or any(c.isspace() for c in url)
            ):
                raise _bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
    return markup


def _button(button: object) -> tuple[str, str | None]:
    if isinstance(button, dict):
        return str(button.get("text", "")), button.get("callback_data") or button.get("url")
    return str(button), None


# --- records ----------------------------------------------------------------------------------


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class Call:
    """One API request, appended on arrival. ``status`` is None until it is answered, and
    stays None if the client gave up first (e.g. a hung call or a cancelled long-poll)."""

    method: str
    params: JSON
    at: float  # the stand-in's clock (time.monotonic unless replaced)
    status: int | None = None
    response: JSON | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_brief(v)}" for k, v in self.params.items())
        outcome = "pending" if self.status is None else str(self.status)
        if self.response is not None and not self.response.get("ok"):
            outcome += f" {self.response.get('description')!r}"
        return f"{self.method}({args}) -> {outcome}"


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class BotMessage:
    """The current state of one message the bot sent (after edits; kept when deleted)."""

    chat_id: int
    message_id: int
    date: int
    text: str | None = None  # as the bot sent it, markup included (None for photos)
    parse_mode: str | None = None
    reply_markup: JSON | None = None
    plain: str = ""  # text or caption as Telegram shows it, after entity parsing
    entities: list[JSON] = field(default_factory=list)
    edits: int = 0
    edit_date: int | None = None
    deleted: bool = False
    photo: str | None = None  # the file_id/URL sent, or "upload:<filename>"
    photo_file_id: str | None = None
    photo_data: bytes | None = field(default=None, repr=False)
    caption: str | None = None  # as the bot sent it

    @property
    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """Rows of (text, callback_data or url); reply-keyboard buttons give (text, None)."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [[_button(b) for b in row] for row in rows]

    def callback_data(self) -> list[str]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


@dataclass(frozen=True)
class AnsweredCallback:
    query_id: str
    text: str | None
    show_alert: bool
    url: str | None = None
    cache_time: int = 0


# --- small async helpers ----------------------------------------------------------------------


class _Signal:
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


class _RateWindow:
    """Send times in a sliding window: ``rate`` per second means at most ``rate`` sends in any
    one-second window (below 1, one send per ``1 / rate`` seconds)."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def retry_after(self, now: float, rate: float) -> int:
        """0 if one more send fits now, else the whole seconds (>= 1) until it does."""
        if rate <= 0:
            raise ValueError(f"rate must be positive or None, not {rate}")
        span, capacity = (1.0, int(rate)) if rate >= 1 else (1.0 / rate, 1)
        times = self._times
        while times and times[0] <= now - span:
            times.popleft()
        if len(times) < capacity:
            return 0
        return max(1, math.ceil(times[-capacity] + span - now))

    def add(self, now: float) -> None:
        self._times.append(now)


@dataclass
class _Fault:
    method: str | None  # None: any method but getUpdates
    remaining: int
    error: ApiError | None  # None: hang


# --- request decoding -------------------------------------------------------------------------

_JSON_PARAMS: Final = frozenset(
    (
        "reply_markup entities caption_entities allowed_updates commands scope "
        "link_preview_options reply_parameters"
    ).split()
)
_INT_PARAMS: Final = frozenset(
    (
        "chat_id message_id offset limit user_id message_thread_id cache_time max_connections "
        "reply_to_message_id"
    ).split()
)
_BOOL_PARAMS: Final = frozenset(
    (
        "show_alert drop_pending_updates disable_notification protect_content "
        "disable_web_page_preview has_spoiler show_caption_above_media "
        "allow_sending_without_reply"
    ).split()
)
_INT_RE: Final = re.compile(r"-?\d+")


def _coerce(raw: JSON) -> JSON:
    """Turn form/query strings (and stringly JSON) into the types Telegram would read."""
    out: JSON = {}
    for key, value in raw.items():
        if isinstance(value, str):
            if key in _JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    what = "reply keyboard markup" if key == "reply_markup" else key
                    raise _bad(f"can't parse {what} JSON object") from None
            elif key in _INT_PARAMS and _INT_RE.fullmatch(value.strip()):
                value = int(value)
            elif key == "timeout":
                with contextlib.suppress(ValueError):
                    value = float(value)
            elif key in _BOOL_PARAMS:
                value = value.strip().lower() in ("true", "1", "yes", "on")
        elif key == "callback_query_id" and isinstance(value, int):
            value = str(value)
        out[key] = value
    return out


async def _read_params(request: web.Request) -> JSON:
    raw: JSON = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise _bad("can't parse JSON object")
            raw.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    with value.file:
                        data = value.file.read()
                    raw[key] = Upload(value.filename, value.content_type, data)
                elif isinstance(value, bytes):
                    raw[key] = value.decode("utf-8", "replace")
                else:
                    raw[key] = value
    return _coerce(raw)


def _now() -> int:
    return int(time.time())


_COMMAND_RE: Final = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,64})?")
_BOT_COMMAND_RE: Final = re.compile(r"[a-z0-9_]{1,32}")


def _command_entities(text: str) -> list[JSON]:
    return [
        {
            "offset": utf16_len(text[: m.start()]),
            "length": utf16_len(m.group()),
            "type": "bot_command",
        }
        for m in _COMMAND_RE.finditer(text)
    ]


# --- the stand-in -----------------------------------------------------------------------------


class StandIn:
    """A Telegram Bot API server on 127.0.0.1 that records and misbehaves on demand."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "miliabot_test_bot",
        bot_first_name: str = "Milia Test Bot",
        global_rate: float | None = 30.0,
        chat_rate: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bot_id, colon, secret = token.partition(":")
        if not (bot_id.isdigit() and colon and secret):
            raise ValueError(f"not a bot token: {token!r}")
        self.token = token
        self.bot_user: JSON = {
            "id": int(bot_id),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.global_rate = global_rate  # messages/second over all chats; None disables
        self.chat_rate = chat_rate  # messages/second per chat; None disables
        self._clock = clock
        # What the bot did.
        self.calls: list[Call] = []
        self.answered_callbacks: list[AnsweredCallback] = []
        self.commands: list[tuple[str, str]] = []  # as of the last setMyCommands
        self.rate_limited = 0  # 429s caused by global_rate / chat_rate
        self._messages: dict[int, dict[int, BotMessage]] = {}
        self._user_messages: dict[int, set[int]] = {}
        self._next_message_id: dict[int, int] = {}
        self._command_sets: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._commands_key: tuple[str, str] | None = None
        # The simulated world.
        self._chats: dict[int, JSON] = {}
        self._users: dict[int, JSON] = {}
        self._last_sender: dict[int, int] = {}
        self._blocked: set[int] = set()
        self._forgotten: set[int] = set()
        self._open_queries: set[str] = set()
        self._ids = itertools.count(1)
        self._webhook: JSON | None = None
        self._allowed_updates: frozenset[str] | None = None
        # Updates for getUpdates.
        self._pending: deque[JSON] = deque()
        self._last_update_id = 0
        self._delivered_through = 0  # getUpdates has returned the updates up to here
        self._poll_generation = 0
        # Misbehaviour.
        self._faults: list[_Fault] = []
        self._delays: dict[str | None, float] = {}
        self._global_window = _RateWindow()
        self._chat_windows: dict[int, _RateWindow] = {}
        # Plumbing.
        self._activity = _Signal()  # any call arriving or finishing, any update queued
        self._updates = _Signal()  # long-polls recheck
        self._stopping = asyncio.Event()
        self._in_flight = 0  # non-getUpdates calls being answered
        self._waiting_polls = 0  # getUpdates calls waiting for an update
        self._last_activity = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._api_root: str | None = None
        self._handlers: dict[str, Callable[[JSON], object]] = {
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
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendChatAction": self._send_chat_action,
            "close": lambda p: True,
            "logOut": lambda p: True,
        }
        self._names = {name.lower(): name for name in [*self._handlers, "getUpdates"]}

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the stand-in is already running")
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        self._api_root = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        self._runner = runner

    async def stop(self) -> None:
        """Stop serving; pending long-polls return empty and hung calls are released."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        self._updates.fire()
        self._activity.fire()
        await runner.cleanup()

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_root(self) -> str:
        if self._api_root is None:
            raise RuntimeError("the stand-in has not been started")
        return self._api_root

    # --- acting as users -----------------------------------------------------------------------

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
    ) -> int:
        """A user (or, for chat_type "channel", the channel) writes ``text``; returns update_id.

        Commands anywhere in the text get bot_command entities, as on Telegram. Writing in a
        private chat unblocks the bot there (a user has to unblock a bot to write to it).
        """
        kind, message = self._incoming(
            user_id, first_name, chat_id, chat_type, language_code, username, chat_title
        )
        message["text"] = text
        if entities := _command_entities(text):
            message["entities"] = entities
        return self._queue(kind, message)

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

    # --- misbehaving on demand -----------------------------------------------------------------

    def block(self, chat_id: int) -> None:
        """Sends to (and edits in) this chat get 403, as when a user blocks the bot."""
        self._blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    def forget(self, chat_id: int) -> None:
        """Calls naming this chat get 400 "chat not found"."""
        self._forgotten.add(chat_id)

    def fail_next(
        self,
        method: str | None = None,
        *,
        count: int = 1,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """The next ``count`` calls of ``method`` (None: any but getUpdates) fail this way.

        ``description`` defaults to Telegram's wording for the status; a 429 always carries
        ``parameters.retry_after`` (default 1).
        """
        if status == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        text = description or _STATUS_TEXT.get(status, "Error")
        error = ApiError(status, text, retry_after=retry_after)
        self._faults.append(_Fault(self._method_name(method), self._count(count), error))

    def hang_next(self, method: str | None = None, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` are never answered (until stop())."""
        self._faults.append(_Fault(self._method_name(method), self._count(count), None))

    def delay(self, method: str | None = None, seconds: float = 0.0) -> None:
        """Answer ``method`` (None: any but getUpdates) ``seconds`` late; 0 clears."""
        name = self._method_name(method)
        if seconds > 0:
            self._delays[name] = seconds
        else:
            self._delays.pop(name, None)

    # --- internals: users and updates ----------------------------------------------------------

    def _method_name(self, method: str | None) -> str | None:
        if method is None:
            return None
        name = self._names.get(method.lower())
        if name is None:
            known = sorted(self._names.values())
            raise ValueError(f"the stand-in has no method {method!r}; it has {known}")
        return name

    @staticmethod
    def _count(count: int) -> int:
        if count < 1:
            raise ValueError("count must be at least 1")
        return count

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
        message: JSON = {"message_id": message_id, "date": _now(), "chat": chat}
        if chat_type == "channel":
            message["sender_chat"] = chat
            return "channel_post", message
        message["from"] = user
        self._last_sender[chat_id] = user_id
        return "message", message

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
        else:
            out["text"] = message.plain
            if message.entities:
                out["entities"] = message.entities
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            out["reply_markup"] = message.reply_markup  # Telegram only echoes inline keyboards
        return out

    # --- internals: HTTP -----------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        return _respond(404, ApiError(404, "Not Found").body())

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        method = self._names.get(method.lower(), method)
        polling = method == "getUpdates"
        call = Call(method, {}, self._clock())
        self.calls.append(call)
        if not polling:
            self._in_flight += 1
            self._last_activity = time.monotonic()
        self._activity.fire()
        try:
            status, body = await self._answer(request, call)
            call.status, call.response = status, body
        finally:
            if not polling:
                self._in_flight -= 1
                self._last_activity = time.monotonic()
            self._activity.fire()
        return _respond(status, body)

    async def _answer(self, request: web.Request, call: Call) -> tuple[int, JSON]:
        try:
            call.params = await _read_params(request)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if call.method not in self._names.values():
                raise ApiError(404, "Not Found")
            fault = self._take_fault(call.method)
            pause = self._delays.get(call.method)
            if pause is None and call.method != "getUpdates":
                pause = self._delays.get(None)
            if pause:
                await self._sleep(pause)
            if fault is not None:
                if fault.error is not None:
                    raise fault.error
                await self._stopping.wait()
                raise ApiError(500, "Internal Server Error: the stand-in stopped")
            if call.method == "getUpdates":
                result: object = await self._get_updates(call.params)
            else:
                result = self._handlers[call.method](call.params)
        except ApiError as err:
            return err.code, err.body()
        except Exception as exc:  # a stand-in bug: say so instead of a bare aiohttp 500
            return 500, ApiError(500, f"Internal Server Error: stand-in bug: {exc!r}").body()
        return 200, {"ok": True, "result": result}

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method or (fault.method is None and method != "getUpdates"):
                fault.remaining -= 1
                if not fault.remaining:
                    self._faults.remove(fault)
                return fault
        return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    # --- internals: methods --------------------------------------------------------------------

    def _chat_id(self, params: JSON) -> int:
        """The chat a call names, after the forget/block checks."""
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad("chat_id is empty")
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:].lower()
            found = [c for c in self._chats.values() if c.get("username", "").lower() == name]
            value = found[0]["id"] if found else None
        if not isinstance(value, int) or isinstance(value, bool) or value in self._forgotten:
            raise _bad("chat not found")
        if value in self._blocked:
            reason = {
                "private": "bot was blocked by the user",
                "group": "bot was kicked from the group chat",
                "supergroup": "bot was kicked from the supergroup chat",
                "channel": "bot is not a member of the channel chat",
            }[self._chat(value)["type"]]
            raise ApiError(403, f"Forbidden: {reason}")
        return value

    def _check_rate(self, chat_id: int) -> None:
        now = self._clock()
        windows: list[tuple[_RateWindow, float]] = []
        if self.global_rate is not None:
            windows.append((self._global_window, self.global_rate))
        if self.chat_rate is not None:
            window = self._chat_windows.setdefault(chat_id, _RateWindow())
            windows.append((window, self.chat_rate))
        wait = max((window.retry_after(now, rate) for window, rate in windows), default=0)
        if wait:
            self.rate_limited += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        for window, _ in windows:
            window.add(now)

    def _text(self, params: JSON, key: str, limit: int) -> tuple[str, list[JSON]]:
        text = params.get(key)
        parse_mode = params.get("parse_mode")
        if not isinstance(text, str):
            raise _bad("message text is empty")
        entities = params.get("entities" if key == "text" else "caption_entities")
        plain, found = _render(text, parse_mode if isinstance(parse_mode, str) else None, entities)
        if key == "text" and not plain:
            raise _bad("message text is empty")
        if len(plain) > limit:
            raise _bad("message is too long" if key == "text" else "message caption is too long")
        return plain, found

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
        plain, entities = self._text(params, "text", MAX_TEXT_LENGTH)
        markup = _check_markup(params.get("reply_markup"))
        self._check_rate(chat_id)
        parse_mode = params.get("parse_mode")
        message = BotMessage(
            chat_id,
            self._new_message_id(chat_id),
            _now(),
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
            raise _bad("there is no photo in the request")
        if isinstance(photo, Upload):
            sent, data = f"upload:{photo.filename}", photo.data
            file_id = f"AgACAgIAAxkBAAI-standin-{next(self._ids)}"
        elif isinstance(photo, str) and not any(c.isspace() for c in photo):
            sent, data = photo, None
            is_url = photo.startswith(("http://", "https://"))
            file_id = f"AgACAgIAAxkBAAI-standin-{next(self._ids)}" if is_url else photo
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        caption = params.get("caption")
        plain, entities = "", list[JSON]()
        if isinstance(caption, str) and caption:
            plain, entities = self._text(params, "caption", MAX_CAPTION_LENGTH)
        markup = _check_markup(params.get("reply_markup"))
        self._check_rate(chat_id)
        parse_mode = params.get("parse_mode")
        message = BotMessage(
            chat_id,
            self._new_message_id(chat_id),
            _now(),
            parse_mode=parse_mode if isinstance(parse_mode, str) else None,
            reply_markup=markup,
            plain=plain,
            entities=entities,
            photo=sent,
            photo_file_id=file_id,
            photo_data=data,
            caption=caption if isinstance(caption, str) and caption else None,
        )
        self._messages.setdefault(chat_id, {})[message.message_id] = message
        return self._message_json(message)

    def _target(self, params: JSON, action: str) -> BotMessage:
        """The bot message an edit/delete names (``action`` is "edit" or "delete")."""
        if params.get("inline_message_id"):
            raise _bad("inline messages are not supported by the stand-in")
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad("message identifier is not specified")
        message = self._messages.get(chat_id, {}).get(message_id)
        if message is None or message.deleted:
            if action == "edit" and message_id in self._user_messages.get(chat_id, ()):
                raise _bad("message can't be edited")
            raise _bad(f"message to {action} not found")
        return message

    def _edit_message_text(self, params: JSON) -> JSON:
        message = self._target(params, "edit")
        if message.photo is not None:
            raise _bad("there is no text in the message to edit")
        plain, entities = self._text(params, "text", MAX_TEXT_LENGTH)
        markup = _check_markup(params.get("reply_markup"), inline_only=True)
        if (plain, entities, markup) == (message.plain, message.entities, message.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        parse_mode = params.get("parse_mode")
        message.text, message.plain, message.entities = params["text"], plain, entities
        message.parse_mode = parse_mode if isinstance(parse_mode, str) else None
        message.reply_markup = markup  # like Telegram: no reply_markup removes the keyboard
        return self._edited(message)

    def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._target(params, "edit")
        markup = _check_markup(params.get("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        message.reply_markup = markup
        return self._edited(message)

    def _edited(self, message: BotMessage) -> JSON:
        message.edits += 1
        message.edit_date = _now()
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
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
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

    @staticmethod
    def _commands_scope(scope: object, language_code: object) -> tuple[str, str]:
        key = json.dumps(scope, sort_keys=True) if scope else '{"type": "default"}'
        return key, language_code if isinstance(language_code, str) else ""

    def _set_my_commands(self, params: JSON) -> bool:
        given = params.get("commands")
        if not isinstance(given, list):
            raise _bad("can't parse commands JSON object")
        if len(given) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        commands = []
        for item in given:
            name = item.get("command") if isinstance(item, dict) else None
            description = item.get("description") if isinstance(item, dict) else None
            if not isinstance(name, str) or not _BOT_COMMAND_RE.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            commands.append((name, description))
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
            raise _bad("wrong parameter action in request")
        return True

    def _set_allowed_updates(self, params: JSON) -> None:
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(map(str, allowed)) or None

    def _set_webhook(self, params: JSON) -> bool:
        url = params.get("url") or ""
        if not isinstance(url, str) or (url and not url.startswith("https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates"):
            self._drop_pending()
        self._set_allowed_updates(params)
        max_connections = params.get("max_connections")
        self._webhook = {"url": url, "max_connections": max_connections or 40} if url else None
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


_WEBHOOK_CONFLICT: Final = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)
_POLL_CONFLICT: Final = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)


def _respond(status: int, body: JSON) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        headers={"Content-Type": "application/json"},
    )
