"""A loopback stand-in for the Telegram Bot API, for tests, the console and benchmarks.

The real python-telegram-bot ``Application`` runs against it unchanged::

    async with StandIn() as standin:
        app = ApplicationBuilder().token(DEFAULT_TOKEN).base_url(f"{standin.api_root}/bot").build()

It answers ``{api_root}/bot{token}/{method}`` (any HTTP verb; JSON, urlencoded, multipart or
query-string parameters; method names case-insensitive like Telegram) with Telegram's shapes:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "..."}``,
plus ``"parameters": {"retry_after": N}`` on 429. The HTTP status equals ``error_code``.

Test code acts as users through the plain (sync) methods ``send_message`` (with formatting
entities and replies), ``send_photo``, ``send_location``, ``press_button``, ``press`` and
``forge_press`` (any callback data, as a modified client could send); they must be called
from the event loop's thread. ``copyMessage`` copies text and photo messages, users' or the
bot's. Everything
the bot does is recorded in ``calls`` and as per-chat state (``chat``, ``last``).

A set webhook makes getUpdates answer 409; once ``deliver_webhooks_to(root)`` says where its
URL is served, queued updates are POSTed there with the secret header, as Telegram does
(``webhooks.py``; every POST in ``webhook_posts``). Deliberate limits: no inline messages,
Markdown/MarkdownV2 texts are accepted unchecked (only HTML is validated), and unlike
Telegram (which shows unknown named HTML entities literally) ``&nbsp;`` and friends are
rejected, because a bot sending them is almost surely wrong. Rate limits apply to the
message-sending methods in ``RATE_LIMITED_METHODS`` only (edits, deletes, answers are free).

The parts, one module each: ``server`` (``StandIn`` and its HTTP surface), ``methods`` (the
Bot API methods), ``users`` (simulated users), ``state`` (chats, messages, queued updates,
waiting), ``webhooks`` (posting updates to a set webhook), ``faults`` (misbehaviour and rate
limits), ``validation`` (Telegram's checks on texts and keyboards) and ``records`` (calls,
messages, ``ApiError``).
"""

from miliabot_tg.standin.faults import RATE_LIMITED_METHODS
from miliabot_tg.standin.records import (
    DEFAULT_TOKEN,
    NOT_MODIFIED,
    AnsweredCallback,
    ApiError,
    BotMessage,
    Call,
    Upload,
)
from miliabot_tg.standin.server import MAX_UPLOAD_BYTES, StandIn
from miliabot_tg.standin.users import CHAT_TYPES, ButtonNotFoundError
from miliabot_tg.standin.validation import (
    CHAT_ACTIONS,
    MAX_CALLBACK_DATA_BYTES,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
)
from miliabot_tg.telegram_html import EntityParseError, parse_html

__all__ = [
    "CHAT_ACTIONS",
    "CHAT_TYPES",
    "DEFAULT_TOKEN",
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_CAPTION_LENGTH",
    "MAX_TEXT_LENGTH",
    "MAX_UPLOAD_BYTES",
    "NOT_MODIFIED",
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
