"""Logging set-up that never lets the bot token out.

Lines are human-readable by default; with `MILIABOT_LOG_FORMAT=json` each is one JSON
object (timestamp, level, logger, message, and the update, occurrence or delivery it is
about where there is one), for a log collector. The update being handled is known through
a context variable set when its handling begins (`update_context`), so every line its
handlers log carries it; engines pass `extra={"occurrence_id": ...}` where they have one.
"""

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

REDACTED = "<token>"
# Record attributes (from `extra=` or the context) that JSON lines carry when present.
CONTEXT_KEYS = ("update_id", "occurrence_id", "delivery_id", "broadcast_id")
# The update whose handling is running in this task, if any.
current_update: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "current_update", default=None
)


def update_context(update: object) -> None:
    """Remember the update being handled, for every line logged while handling it."""
    update_id = getattr(update, "update_id", None)
    current_update.set(update_id if isinstance(update_id, int) else None)


class _ContextFilter(logging.Filter):
    """Copy the update being handled onto the record (unless `extra=` named one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "update_id", None) is None:
            record.update_id = current_update.get()
        return True


class RedactingFormatter(logging.Formatter):
    """Format as usual, then blank out every secret, tracebacks included.

    Redacting the formatted line (rather than filtering records) also catches the
    token inside httpx's request URLs, PTB's debug lines and exception texts.
    """

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Case-insensitive: PTB capitalizes error descriptions, lowercasing the rest of
        # them, so a token quoted by Telegram in an error comes back in lower case.
        forms = {form for s in self._secrets for form in (s, json.dumps(s)[1:-1])}
        self._pattern = (
            re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))), re.I)
            if forms
            else None
        )

    def redact(self, text: str) -> str:
        """Blank out every secret, however it is cased (or JSON-escaped)."""
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object per line; the secrets are blanked in the finished line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(message)s", secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # A secret inside a JSON string is escaped as json.dumps escapes it: both forms go.
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def setup_logging(
    *, secrets: Iterable[str] = (), level: int = logging.INFO, json_lines: bool = False
) -> None:
    """Log to stderr through the redacting formatter; quiet the chatty HTTP client."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter(secrets)
        if json_lines
        else RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL, which contains the token, at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # An uncaught exception's traceback goes through the same redaction (PTB's
    # InvalidToken, for one, quotes the token in its message).
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    logging.getLogger("miliabot").critical("uncaught exception", exc_info=(kind, error, trace))
