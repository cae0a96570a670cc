"""The composition root: build the one Application with everything wired in."""

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import httpx
from telegram import BotCommandScopeChat, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, Defaults, ExtBot, TypeHandler
from telegram.request import HTTPXRequest

from miliabot_tg import broadcast_texts, texts
from miliabot_tg.announcements import AnnouncementHandlers
from miliabot_tg.broadcast_handlers import BroadcastHandlers
from miliabot_tg.broadcaster import Broadcaster, BroadcastPolicy
from miliabot_tg.content_handlers import ContentHandlers
from miliabot_tg.dispatch import Dispatcher, DispatchPolicy
from miliabot_tg.handlers import Deps, Handlers
from miliabot_tg.inbound import Inbound
from miliabot_tg.logs import update_context
from miliabot_tg.metrics import Metrics
from miliabot_tg.outdoors_handlers import OutdoorHandlers, UvService
from miliabot_tg.pacing import Pacer
from miliabot_tg.privacy import PrivacyHandlers
from miliabot_tg.progress_handlers import ProgressHandlers, WeeklySummary
from miliabot_tg.progress_store import WEEKLY
from miliabot_tg.reminders.handlers import ReminderHandlers
from miliabot_tg.settings_handlers import SettingsHandlers
from miliabot_tg.stats_handlers import StatsHandlers
from miliabot_tg.uv import UvClient

BotApplication = Application[Any, Any, Any, Any, Any, Any]
log = logging.getLogger(__name__)

# Long-poll length: Telegram holds getUpdates open this long when there is nothing new.
POLL_TIMEOUT = 30
# Connections to the Bot API: up to 256 at once (PTB's default for an Application), but
# only KEEP_ALIVE idle ones kept open. httpcore 1.0 rescans every pooled connection, with
# a quadratic step and a socket poll for each, twice per request (encode/httpcore#1035),
# so a pool grown to a hundred by one burst made every later request cost milliseconds
# more: at 100 webhook updates a second the bot fell behind and never caught up. A
# connection beyond this many is closed once idle; Telegram at its 30 messages a second
# keeps far fewer than this busy.
MAX_CONNECTIONS = 256
KEEP_ALIVE = 20
# The handler group that notes the update for the logs: before the flood guard's.
LOG_CONTEXT_GROUP = -2_000_000


@dataclass(frozen=True)
class Built:
    """The application and the engines it runs: reminders and broadcasts."""

    app: BotApplication
    dispatcher: Dispatcher
    broadcaster: Broadcaster
    metrics: Metrics = field(default_factory=Metrics)
    uv: UvService | None = None


def build_application(
    deps: Deps,
    token: str,
    *,
    policy: DispatchPolicy | None = None,
    broadcast_policy: BroadcastPolicy | None = None,
    dispatch: bool = True,
    metrics: Metrics | None = None,
) -> Built:
    """Build the bot: HTTP client, pacing, defaults, handlers, the dispatcher and hooks.

    `dispatch=False` builds everything but leaves the dispatcher asleep, for tests that
    drive its cycles by hand on a frozen clock.
    """
    settings = deps.settings
    policy = policy or DispatchPolicy(
        grace=timedelta(minutes=settings.grace_minutes),
        lease=timedelta(seconds=settings.claim_lease_seconds),
        history=timedelta(days=settings.history_days),
    )
    pacer = Pacer(
        global_rate=settings.global_rate,
        chat_rate=settings.chat_rate,
        max_in_flight=policy.concurrency,
    )

    # Paid broadcasts have Telegram's paid limit to themselves: a bot of their own, with a
    # pacer of its own (per-chat spacing included), so they neither use nor wait for the
    # free 30 a second that replies and reminders share.
    paid_pacer = Pacer(
        global_rate=settings.paid_broadcast_rate,
        chat_rate=settings.chat_rate,
        max_in_flight=policy.concurrency,
    )
    defaults = Defaults(
        parse_mode=ParseMode.HTML,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    paid_bot = (
        ExtBot(
            token,
            base_url=f"{settings.api_url}/bot",
            base_file_url=f"{settings.api_url}/file/bot",
            defaults=defaults,
            rate_limiter=paid_pacer,
            # As many connections as the main bot: PTB's default for a bare bot is one,
            # which a paced broadcast with many sends in flight would queue behind.
            request=_api_request({}),
        )
        if settings.paid_broadcasts
        else None
    )

    def share_rate(processes: int) -> None:
        """Several processes on one database split Telegram's global limits between them."""
        pacer.global_rate = settings.global_rate / processes
        paid_pacer.global_rate = settings.paid_broadcast_rate / processes

    async def post_init(app: BotApplication) -> None:
        """Publish the command menu, then start the reminder and broadcast engines."""
        # Operators also see their own commands, in their chats only.
        for admin_id in sorted(settings.admin_ids):
            try:
                await app.bot.set_my_commands(
                    [*texts.COMMANDS, *broadcast_texts.OPERATOR_COMMANDS],
                    scope=BotCommandScopeChat(admin_id),
                )
            except TelegramError as exc:  # e.g. an operator who never opened the chat
                log.warning("no command menu for operator %s: %s", admin_id, exc.message)
        try:
            await app.bot.set_my_commands(list(texts.COMMANDS))
        except TelegramError as exc:
            # The menu is a convenience; the bot works without it and the next start retries.
            log.warning("could not publish the command menu (%s); starting anyway", exc)
        deps.live.follow(deps.engine, app.job_queue)  # published content, within seconds
        if dispatch:
            assert app.job_queue is not None
            dispatcher.start(app.job_queue)
            if paid_bot is not None:
                await paid_bot.initialize()
            broadcaster.start()
            uv_service.start(app.job_queue)

    async def post_stop(_app: BotApplication) -> None:
        """Stop broadcasting while the HTTP client is still open for the sends on the wire."""
        deps.live.stop()
        if dispatch:
            await broadcaster.stop()

    async def post_shutdown(_app: BotApplication) -> None:
        """Record what was sent, give the rest back at once, and leave the shared database."""
        deps.live.stop()  # done already if post_stop ran
        if dispatch:
            await broadcaster.stop()  # done already if post_stop ran
            if paid_bot is not None:
                await paid_bot.shutdown()
            # Outcomes first: a claim given back with its message sent but unrecorded would
            # be sent again. If they cannot be recorded, the claims wait out their lease.
            try:
                for engine in (dispatcher, broadcaster):
                    if await engine.record_outcomes():
                        await asyncio.to_thread(engine.release_claims)
                await asyncio.to_thread(dispatcher.leave)
            except Exception as exc:  # the database is gone: the leases run out instead
                log.warning("could not give back claims (%s); they expire with the lease", exc)
        await uv_service.client.close()

    inbound = Inbound(
        limit=settings.flood_limit, window=settings.flood_window_seconds, clock=deps.clock
    )
    metrics = metrics or Metrics()
    metrics.watch_pacers(pacer, paid_pacer)
    metrics.watch_content(lambda: deps.live.version)
    counted: dict[str, Any] = {"event_hooks": {"response": [metrics.on_response]}}
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{settings.api_url}/bot")
        .base_file_url(f"{settings.api_url}/file/bot")
        .defaults(defaults)
        # Every outgoing message, replies, reminders and broadcasts alike, passes here.
        .rate_limiter(pacer)
        # Users are independent of each other; one slow reply must not hold up the rest: each
        # chat's updates queue in a lane of their own, and one user's flood is cut short.
        .concurrent_updates(metrics.processor(inbound))  # LaneProcessor, counted and timed
        # PTB's default requests, plus a hook that counts the Bot API's error answers.
        .request(_api_request(counted))
        .get_updates_request(
            HTTPXRequest(
                connection_pool_size=1, read_timeout=POLL_TIMEOUT + 10, httpx_kwargs=counted
            )
        )
        .post_init(post_init)
        .post_stop(post_stop)
        .post_shutdown(post_shutdown)
        .build()
    )
    uv_service = UvService(
        client=UvClient(settings.uv_api_url, clock=deps.clock, timeout=settings.uv_timeout_seconds),
        engine=deps.engine,
        clock=deps.clock,
    )
    dispatcher = Dispatcher(
        bot=app.bot,
        engine=deps.engine,
        guide=lambda: deps.guide,
        clock=deps.clock,
        default_tz=settings.default_tz,
        policy=policy,
        on_share=share_rate,
        send_rate=lambda: pacer.global_rate,
        # A bot that dispatches stops sending once it is shutting down; one driven by hand
        # (benchmarks, the console) has no running state to consult.
        keep_going=(lambda: app.running) if dispatch else (lambda: True),
        on_outcomes=metrics.count_outcomes,
        decorate=uv_service.decorate,
        renderers={WEEKLY: WeeklySummary(engine=deps.engine, default_tz=settings.default_tz)},
    )
    broadcaster = Broadcaster(
        bot=paid_bot or app.bot,
        engine=deps.engine,
        guide=lambda: deps.guide,
        clock=deps.clock,
        instance=dispatcher.instance,
        lease=policy.leasing,
        policy=broadcast_policy,
        send_rate=lambda: (paid_pacer if paid_bot else pacer).global_rate,
        keep_going=lambda: dispatcher.keep_going(),
        beat=dispatcher.beat,
        paid=paid_bot is not None,
    )
    deps = replace(deps, wake=dispatcher.wake, wake_broadcasts=broadcaster.wake)
    deps = replace(deps, forget_place=lambda user_id: uv_service.remember(user_id, None))
    # Order matters: the reminder handlers take locations and typed answers they asked for
    # before the guide's catch-alls (text search, unknown commands, "I can only read text").
    # First of all, so that every line logged while handling an update names it.
    app.add_handler(TypeHandler(Update, _note_update), group=LOG_CONTEXT_GROUP)
    inbound.register(app)  # a handler group before everything, even recording the visit
    ReminderHandlers(deps).register(app)
    SettingsHandlers(deps).register(app)
    ProgressHandlers(deps).register(app)
    StatsHandlers(deps).register(app)  # operators only; anyone else's /stats is unknown
    AnnouncementHandlers(deps).register(app)
    BroadcastHandlers(deps).register(app)
    OutdoorHandlers(deps, uv_service).register(app)
    ContentHandlers(deps).register(app)
    PrivacyHandlers(deps).register(app)  # /mydata, before the unknown-command catch-all
    Handlers(deps).register(app)
    return Built(app, dispatcher, broadcaster, metrics, uv_service)


async def _note_update(update: Update, _context: object) -> None:
    """Name the update in every log line written while it is handled (logs.py)."""
    update_context(update)


def _api_request(httpx_kwargs: dict[str, Any]) -> HTTPXRequest:
    """PTB's HTTP client for Bot API calls (not getUpdates), with the pool kept small."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEP_ALIVE)
    return HTTPXRequest(
        connection_pool_size=MAX_CONNECTIONS, httpx_kwargs={"limits": limits, **httpx_kwargs}
    )
