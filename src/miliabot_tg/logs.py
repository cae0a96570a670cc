"""Logging set-up that never lets the bot token out."""

import logging
import sys
from collections.abc import Iterable
from types import TracebackType

REDACTED = "<token>"


class RedactingFormatter(logging.Formatter):
    """Format as usual, then blank out every secret, tracebacks included.

    Redacting the formatted line (rather than filtering records) also catches the
    token inside httpx's request URLs, PTB's debug lines and exception texts.
    """

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def setup_logging(*, secrets: Iterable[str] = (), level: int = logging.INFO) -> None:
    """Log to stderr through the redacting formatter; quiet the chatty HTTP client."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
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
