"""What the stand-in records: the calls it answered and the bot's messages as users see them.

Also the shapes every part shares: the ``JSON`` alias, the test token and ``ApiError``,
Telegram's ``{"ok": false, ...}`` answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

JSON = dict[str, Any]

DEFAULT_TOKEN: Final = "123456:TEST-standin-token"  # noqa: S105 (a fake, public test token)
NOT_MODIFIED: Final = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


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


def bad(description: str) -> ApiError:
    """A 400 "Bad Request: ..." like Telegram's."""
    return ApiError(400, f"Bad Request: {description}")


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
    document: str | None = None  # the uploaded file's name (sendDocument)
    document_data: bytes | None = field(default=None, repr=False)
    document_type: str | None = None

    @property
    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """Rows of (text, callback_data or url); reply-keyboard buttons give (text, None)."""
        markup = self.reply_markup or {}
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [[_button(b) for b in row] for row in rows]

    def callback_data(self) -> list[str]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


def _button(button: object) -> tuple[str, str | None]:
    if isinstance(button, dict):
        return str(button.get("text", "")), button.get("callback_data") or button.get("url")
    return str(button), None


@dataclass(frozen=True)
class AnsweredCallback:
    query_id: str
    text: str | None
    show_alert: bool
    url: str | None = None
    cache_time: int = 0
