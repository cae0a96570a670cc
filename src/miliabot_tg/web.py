"""The bot's one HTTP server: health, readiness, metrics and (in webhook mode) the webhook.

* `/healthz`: 200 while the process is alive and its event loop turns (Docker's
  HEALTHCHECK, a liveness probe). Nothing else is checked, so a database outage never
  gets a healthy bot restarted.
* `/readyz`: 200 only when the bot can do its work: started (Telegram answered), the
  database answers a cheap query within `DB_TIMEOUT` (run in a thread, never on the event
  loop; one at a time), content is loaded, and the reminder dispatcher has shown progress
  within its stall limit. Otherwise 503, with the reason in the body.
* `/metrics`: Prometheus text format (metrics.py); the figures kept in the database are
  read at each scrape, off the event loop, within the same timeout.
* The webhook path (webhook.py), when `MILIABOT_WEBHOOK_URL` is set.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, text

from miliabot_tg.app import Built
from miliabot_tg.config import Settings
from miliabot_tg.content import Guide
from miliabot_tg.db import reading
from miliabot_tg.dispatch import Dispatcher
from miliabot_tg.handlers import Deps
from miliabot_tg.metrics import Metrics, read_snapshot
from miliabot_tg.models import utcnow
from miliabot_tg.webhook import MAX_BODY_BYTES, WebhookReceiver, WebhookSpec

log = logging.getLogger(__name__)

# How long /readyz and /metrics wait for the database.
DB_TIMEOUT = 2.0
# How long stopping the server may take (open connections are cut after it).
SHUTDOWN_TIMEOUT = 1.0


def _background(work: Coroutine[Any, Any, None]) -> "asyncio.Future[None]":
    """Run `work` as a task whose failure is read even if no one waits for it any more."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def _ping(engine: Engine) -> None:
    with reading(engine).connect() as conn:
        conn.execute(text("SELECT 1"))


@dataclass
class Readiness:
    """Whether this bot process can do its work now, and if not, why."""

    engine: Engine
    guide: Callable[[], Guide]
    dispatcher: Dispatcher
    started: Callable[[], bool]
    db_timeout: float = DB_TIMEOUT
    _probe: "asyncio.Future[None] | None" = field(default=None, init=False, repr=False)

    async def database(self) -> str | None:
        """None if the database answered `SELECT 1` in time, else why not.

        One probe at a time: against a stalled database, probes every second must not
        pile up threads that each wait for its connect timeout.
        """
        if self._probe is None or self._probe.done():
            self._probe = _background(asyncio.to_thread(_ping, self.engine))
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self.db_timeout)
        except TimeoutError:
            return f"database: no answer within {self.db_timeout:g} s"
        except Exception as exc:
            first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
            return f"database: {type(exc).__name__}: {first}"[:300]
        return None

    async def reasons(self) -> list[str]:
        """Everything that keeps the bot from being ready (empty: ready)."""
        reasons = []
        if not self.started():
            reasons.append("not started: waiting for Telegram, or stopping")
        if (problem := await self.database()) is not None:
            reasons.append(problem)
        if not self.guide().snippets:
            reasons.append("no guide content loaded")
        stalled = self.dispatcher.since_progress()
        limit = self.dispatcher.policy.stalled_after.total_seconds()
        if stalled > limit:
            reasons.append(f"the reminder dispatcher has not cycled for {stalled:.0f} s")
        return reasons


class WebServer:
    """One aiohttp server on `MILIABOT_LISTEN`; started first, stopped last."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: Readiness,
        metrics: Metrics,
        webhook: WebhookReceiver | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.clock = clock
        self.host, self.port = host, port
        self.readiness = readiness
        self.metrics = metrics
        self.webhook = webhook
        self._runner: web.AppRunner | None = None
        self._scrape: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        """Where the server is reachable, with the port actually bound."""
        wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104
        host = wildcard.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be used (in use, say)."""
        # The webhook's size limit is the only body any route reads.
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.webhook is not None:
            app.router.add_post(self.webhook.path, self.webhook.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner
        log.info("serving /healthz, /readyz and /metrics on %s", self.url)

    async def stop(self) -> None:
        """Stop listening; requests in progress get up to SHUTDOWN_TIMEOUT."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = await self.readiness.reasons()
        if reasons:
            return web.Response(status=503, text="not ready: " + "; ".join(reasons) + "\n")
        return web.Response(text="ready\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        await self.refresh_snapshot()
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def refresh_snapshot(self) -> None:
        """Read the database's figures for the metrics; on failure keep the last ones."""
        if self._scrape is None or self._scrape.done():
            self._scrape = _background(self._read_snapshot())
        # Past the timeout the last figures serve; they say how old they are.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._scrape), self.readiness.db_timeout)

    async def _read_snapshot(self) -> None:
        started = time.monotonic()
        try:
            snapshot = await asyncio.to_thread(read_snapshot, self.readiness.engine, self.clock())
        except Exception as exc:
            log.warning("metrics: cannot read the database (%s)", type(exc).__name__)
            return
        self.metrics.snapshot = snapshot
        log.debug("metrics: database read in %.3f s", time.monotonic() - started)


def make_server(settings: Settings, deps: Deps, built: Built) -> WebServer | None:
    """The server `MILIABOT_LISTEN` asks for (None: "off"), with the webhook if configured."""
    address = settings.listen_address()
    if address is None:
        return None
    webhook = None
    if settings.webhook_url is not None:
        assert settings.webhook_secret is not None  # Settings refuses a webhook without it
        spec = WebhookSpec(
            url=settings.webhook_url,
            secret=settings.webhook_secret.get_secret_value(),
            max_connections=settings.webhook_max_connections,
        )
        webhook = WebhookReceiver(
            app=built.app,
            spec=spec,
            path=settings.webhook_path(),
            engine=deps.engine,
            on_status=lambda status: built.metrics.webhook_requests.labels(str(status)).inc(),
        )
    readiness = Readiness(
        engine=deps.engine,
        guide=deps.live,
        dispatcher=built.dispatcher,
        started=lambda: built.app.running,
    )
    host, port = address
    return WebServer(
        host=host,
        port=port,
        readiness=readiness,
        metrics=built.metrics,
        webhook=webhook,
        clock=deps.clock,
    )
