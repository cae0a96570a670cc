"""Webhook mode: Telegram posts each update to `MILIABOT_WEBHOOK_URL` instead of being polled.

The receiver answers at once and processes after: a request whose
`X-Telegram-Bot-Api-Secret-Token` is missing or wrong gets 403 (compared in constant time)
and nothing of it is read; a body over `MAX_BODY_BYTES` gets 413; one that is not JSON, or
not an update, gets 400; a good update gets 200 and goes into the application's update
queue, to be processed like a polled one. Failures are logged in one line, at most once a
minute per kind, never with a traceback (a stranger posting rubbish must not fill the log).

Registration (setWebhook with the secret, `allowed_updates` and `max_connections`) is done
at start-up only when Telegram's `getWebhookInfo` shows something else (another URL,
other update types or connection limit), or says its deliveries are being refused with
403 (the secret was changed). Several instances behind a load balancer therefore do not
each register: on PostgreSQL they also take turns under an advisory lock, so the second
to start sees the first's registration and leaves it. `miliabot webhook set` registers
by hand, unconditionally (after changing the secret, say).
"""

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from telegram import Bot, Update, WebhookInfo

log = logging.getLogger(__name__)

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header's name)
# Updates are a few KB; Telegram's largest (a long message with entities) is far below this.
MAX_BODY_BYTES: Final = 1024 * 1024
# Logged at most this often per kind of refused request.
QUIET_FOR: Final = 60.0
# A 403 that Telegram reports from its deliveries within this long means a changed secret.
RECENT_ERROR: Final = timedelta(minutes=10)
# pg_advisory_lock key: "miliabot webhook" (any constant shared by every instance).
LOCK_KEY: Final = 0x6D696C6961776862


@dataclass(frozen=True)
class WebhookSpec:
    """What Telegram is told: where to post, the secret, which updates, how many at once."""

    url: str
    secret: str = field(repr=False)
    max_connections: int = 40
    allowed_updates: tuple[str, ...] = tuple(Update.ALL_TYPES)


def needs_registering(info: WebhookInfo, spec: WebhookSpec, now: datetime) -> str | None:
    """Why the webhook must be (re-)registered, or None when Telegram has it as wanted."""
    if info.url != spec.url:
        return f"Telegram has {info.url or 'no webhook'!r}"
    if info.max_connections is not None and info.max_connections != spec.max_connections:
        return f"max_connections is {info.max_connections}"
    if set(info.allowed_updates or ()) != set(spec.allowed_updates):
        return "other update types are allowed"
    error_at = info.last_error_date
    if (
        info.last_error_message
        and "403" in info.last_error_message
        and error_at is not None
        and now - error_at.astimezone(UTC) < RECENT_ERROR
    ):
        return "Telegram's deliveries were refused with 403 (a changed secret?)"
    return None


async def set_webhook(bot: Bot, spec: WebhookSpec) -> None:
    """Register the webhook with Telegram, unconditionally."""
    await bot.set_webhook(
        spec.url,
        secret_token=spec.secret,
        allowed_updates=list(spec.allowed_updates),
        max_connections=spec.max_connections,
    )


async def register(bot: Bot, spec: WebhookSpec, engine: Engine | None = None) -> bool:
    """Register the webhook unless Telegram has it already; True if it was registered."""
    async with _turn(engine):
        info = await bot.get_webhook_info()
        reason = needs_registering(info, spec, datetime.now(UTC))
        if reason is None:
            log.info("the webhook is registered already; leaving it")
            return False
        await set_webhook(bot, spec)
        log.info("registered the webhook (%s before)", reason)
        return True


@contextlib.asynccontextmanager
async def _turn(engine: Engine | None) -> AsyncIterator[None]:
    """Hold a PostgreSQL advisory lock meanwhile, so instances register one after another."""
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    try:
        conn = await asyncio.to_thread(_lock, engine)
    except Exception as exc:  # no lock (the database is slow): checking first still holds
        log.warning("registering the webhook without the lock (%s)", type(exc).__name__)
        yield
        return
    try:
        yield
    finally:
        await asyncio.to_thread(_unlock, conn)


def _lock(engine: Engine) -> Connection:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
    except Exception:
        conn.close()
        raise
    return conn


def _unlock(conn: Connection) -> None:
    # Closing the session frees the lock anyway.
    with contextlib.closing(conn), contextlib.suppress(Exception):
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


class _Quiet:
    """One log line per kind of refusal at most every QUIET_FOR seconds, with a count."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def note(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -QUIET_FOR) < QUIET_FOR:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        suffix = f" ({held} more like it not logged)" if held else ""
        log.warning(message + suffix, *args)


class WebhookReceiver:
    """The webhook's request handler, for the bot's one HTTP server (web.py)."""

    def __init__(
        self,
        *,
        app: Any,
        spec: WebhookSpec,
        path: str,
        engine: Engine | None = None,
        on_status: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.spec = spec
        self.path = path
        self.engine = engine
        self._secret = spec.secret.encode()
        # Updates are taken only between start-up (the bot known) and the start of stopping;
        # otherwise 503, and Telegram delivers again later (perhaps to another instance).
        self.accepting = False
        self._quiet = _Quiet()
        self._on_status = on_status

    async def register(self) -> bool:
        """Register with Telegram unless it has this webhook already (once across instances)."""
        return await register(self.app.bot, self.spec, self.engine)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer Telegram's POST at once; the update is processed after."""
        response = await self._answer(request)
        if self._on_status is not None:
            self._on_status(response.status)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._secret):
            self._quiet.note(
                "secret", "webhook: refused a request from %s: no or a wrong secret", request.remote
            )
            return web.Response(status=403, text="forbidden\n")
        if not self.accepting:
            return web.Response(status=503, text="not accepting updates now\n")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            self._quiet.note("size", "webhook: refused a body of %d bytes", request.content_length)
            return web.Response(status=413, text="too large\n")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._quiet.note("size", "webhook: refused a body over %d bytes", MAX_BODY_BYTES)
            return web.Response(status=413, text="too large\n")
        update = self._parse(body)
        if update is None:
            return web.Response(status=400, text="not an update\n")
        self.app.update_queue.put_nowait(update)
        return web.Response(text="ok\n")

    def _parse(self, body: bytes) -> Update | None:
        """The update in `body`, or None (logged, quietly) if it is not one."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("no update_id")
            update = Update.de_json(data, self.app.bot)
        except Exception as exc:
            self._quiet.note(
                "body", "webhook: refused a body that is not an update (%s)", str(exc)[:100]
            )
            return None
        return update
