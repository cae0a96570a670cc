"""Running the bot: wait for Telegram, start, and stop cleanly within Docker's grace period.

`Application.run_polling` does all of this in one call, but it ends in a traceback when
Telegram cannot be reached at start, and it stops by PTB's order, in which the engines'
messages still queued in the pacer go out (or wait) one by one before anything is given
back. Here the same steps are taken by hand (PTB's "custom asyncio" pattern:
initialize, start polling, start, wait, then stop and shut down in reverse):

* Start-up: `getMe` (inside `Application.initialize`) is tried until Telegram answers,
  backing off from 1 s, doubling up to 60 s, with jitter, one log line per attempt. A token
  Telegram rejects (401/404) is not retried: `InvalidToken` reaches the command line, which
  says so in one line and exits with 78 (EX_CONFIG). A stop signal ends the waiting.
* `post_init`, `post_stop` and `post_shutdown` are not called by `initialize`, `stop` and
  `shutdown` (only by `run_polling`), so they are called here, once each, where
  `run_polling` would.
* Shutdown on SIGTERM or SIGINT: stop fetching updates; stop the application (from its
  first step on the engines claim and send nothing more); let the replies to updates
  already fetched finish, briefly; then close the pacers, so that every reminder and
  broadcast still waiting for its turn is dropped at once and recorded as given back
  rather than sent one by one; wait for the sends already on the wire and their outcomes;
  then `post_stop` and `post_shutdown` record what is left and release the remaining
  claims. If all that takes longer than `STOP_WITHIN`, the process says so and exits
  anyway: what it still holds is taken over when its lease runs out, which is safe.
"""

import asyncio
import contextlib
import logging
import os
import random
import signal
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.ext import ExtBot
from telegram.warnings import PTBDeprecationWarning

from miliabot_tg.app import POLL_TIMEOUT, BotApplication, Built
from miliabot_tg.config import ConfigError
from miliabot_tg.election import PollerElection, elects

if TYPE_CHECKING:
    from miliabot_tg.web import WebServer

log = logging.getLogger("miliabot")

# Docker sends SIGKILL 10 s after SIGTERM by default; stopping must be over well before.
STOP_WITHIN = 8.0
# Of that, how long replies to updates already fetched may take before the pacer closes.
REPLIES_WITHIN = 3.0
# How long fetching updates may take to stop (its last call tells Telegram what we read).
POLLING_STOPS_WITHIN = 2.0


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts to reach Telegram: `first` doubling up to `cap`, jittered."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1, 2, ...): half to all of the step.

        Jitter keeps many bots restarted together from knocking at the same moments.
        """
        step = min(self.cap, self.first * 2.0 ** min(max(attempt - 1, 0), 30))
        jitter = (rng or random.Random()).uniform(0.5, 1.0)
        return step * jitter


async def run(
    built: Built,
    *,
    backoff: Backoff | None = None,
    stop_within: float = STOP_WITHIN,
    stop: asyncio.Event | None = None,
    web: "WebServer | None" = None,
) -> None:
    """Run the bot until SIGTERM or SIGINT (or `stop` is set), then stop it in order.

    `web` (health, readiness, metrics; the webhook, if it has one) listens from the first
    moment to the last. Raises `InvalidToken` when Telegram rejects the token.
    """
    app = built.app
    stop = stop or asyncio.Event()
    _on_stop_signals(stop)
    await _start_web(web)
    if not await _until_telegram_answers(app.initialize, stop, backoff or Backoff()):
        log.info("stopped before Telegram answered")
        await app.shutdown()
        if web is not None:
            await web.stop()
        return
    election: PollerElection | None = None
    try:
        # A stop signal during start-up (Telegram gone again, say) ends it too.
        hooked = web is not None and web.webhook is not None
        # Polling: one process of those sharing PostgreSQL polls (election.py); a webhook
        # is taken by every process.
        election = None if hooked else _election(built)
        starting = _start_hook(app, web, stop) if web and hooked else _start(app, election)
        if await _unless_stopped(starting, stop):
            log.info("running; SIGTERM or Ctrl-C stops")
            await stop.wait()
    finally:
        # Whatever happened above, stop in order within the bound; past it, leave anyway,
        # without cancelling anything (a cancelled send could be sent and never recorded).
        stopping = asyncio.create_task(_stop(built, web, election))
        done, _ = await asyncio.wait({stopping}, timeout=stop_within)
        if not done:
            log.error(
                "stopping took longer than %.0f s; exiting anyway (claims still held "
                "expire with their lease and are sent by whoever is running then)",
                stop_within,
            )
            _exit_now(0)
        stopping.result()


async def _start(app: BotApplication, election: PollerElection | None = None) -> None:
    """What `run_polling` does once the application is initialized."""
    if app.post_init is not None:
        await app.post_init(app)
    if election is None:
        log.info("this process polls Telegram for updates (one process on SQLite)")
        await _start_polling(app)
    else:
        election.start()  # polls when it holds the lock; dispatches either way
    await app.start()


async def _start_polling(app: BotApplication, election: PollerElection | None = None) -> None:
    assert app.updater is not None

    def failed(exc: TelegramError) -> None:
        if election is not None and isinstance(exc, Conflict):
            election.conflict()  # another poller: give way (one line, said there)
        else:
            _polling_failed(exc)

    await app.updater.start_polling(
        timeout=timedelta(seconds=POLL_TIMEOUT),
        allowed_updates=Update.ALL_TYPES,
        # The bootstrap (deleteWebhook) retries quietly: Telegram has just answered.
        bootstrap_retries=-1,
        error_callback=failed,
    )


async def _stop_polling(app: BotApplication) -> None:
    if app.updater is not None and app.updater.running:
        try:
            await asyncio.wait_for(app.updater.stop(), POLLING_STOPS_WITHIN)
        except TimeoutError:
            log.warning("Telegram did not confirm the last updates read; they may come again")


def _election(built: Built) -> PollerElection | None:
    """On PostgreSQL, the election of the one process that polls (see election.py)."""
    engine = built.dispatcher.engine
    if not elects(engine):
        return None
    app = built.app
    election: PollerElection | None = None

    async def start() -> None:
        await _start_polling(app, election)

    election = PollerElection(
        engine.url, start_polling=start, stop_polling=lambda: _stop_polling(app)
    )
    return election


async def _start_web(web: "WebServer | None") -> None:
    """Listen before anything else, so /healthz answers while Telegram is waited for."""
    if web is None:
        return
    try:
        await web.start()
    except OSError as exc:
        raise ConfigError(f"MILIABOT_LISTEN {web.host}:{web.port} cannot be used: {exc}") from None


async def _start_hook(app: BotApplication, web: "WebServer", stop: asyncio.Event) -> None:
    """`_start` for webhook mode: take posted updates, then register the webhook (once)."""
    assert web.webhook is not None
    hook = web.webhook
    if app.post_init is not None:
        await app.post_init(app)
    hook.accepting = True  # queued until the application starts, just below
    await app.start()
    # Telegram answered getMe a moment ago; should it fail now, wait for it as at start.

    async def register() -> None:
        await hook.register()

    await _until_telegram_answers(register, stop, Backoff())
    log.info("taking updates at the webhook %s", hook.path)


async def _unless_stopped(step: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `step` to its end and return True, or cancel it and return False on `stop`."""
    task = asyncio.create_task(step)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        task.result()  # its exception, if any
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _stop(
    built: Built, web: "WebServer | None" = None, election: PollerElection | None = None
) -> None:
    """Stop fetching, stop the engines sending, record and give back, then shut down."""
    app = built.app
    log.info("stopping")
    if web is not None and web.webhook is not None:
        web.webhook.accepting = False  # 503: Telegram delivers again later, or elsewhere
    if election is not None:
        await election.close()  # stops polling, then gives the lock to the next process
    await _stop_polling(app)
    if app.running:
        # `stop` marks the application stopped at once, which the engines read as "send
        # nothing more"; it then waits for pending updates and for the dispatcher's cycle.
        stopping = asyncio.create_task(app.stop())
        try:
            await asyncio.wait_for(asyncio.shield(app.update_queue.join()), REPLIES_WITHIN)
        except TimeoutError:
            log.warning("replies still waiting after %.0f s are dropped", REPLIES_WITHIN)
        # Close the pacers now rather than at shutdown: whatever still waits in them is
        # dropped at once and given back, while the sends already on the wire finish and
        # are recorded.
        for bot in {id(b): b for b in (app.bot, built.broadcaster.bot)}.values():
            await _close_pacer(bot)
        await stopping
        if app.post_stop is not None:
            await app.post_stop(app)
    await app.shutdown()
    if app.post_shutdown is not None:
        await app.post_shutdown(app)
    if web is not None:
        await web.stop()  # last: /healthz answers until the end
    log.info("stopped")


async def _close_pacer(bot: ExtBot[Any]) -> None:
    limiter = bot.rate_limiter
    if limiter is not None:
        await limiter.shutdown()


async def _until_telegram_answers(
    attempt: Callable[[], Awaitable[None]], stop: asyncio.Event, backoff: Backoff
) -> bool:
    """Call `attempt` until it succeeds; False if `stop` is set first.

    A rejected token raises `InvalidToken` at once; any other Telegram or network error
    is logged in one line and tried again after a growing, jittered wait.
    """
    failures = 0
    while not stop.is_set():
        try:
            await attempt()
        except InvalidToken:
            raise
        except TelegramError as exc:
            failures += 1
            wait = backoff.delay(failures)
            if isinstance(exc, RetryAfter):
                wait = max(wait, _retry_after(exc))
            log.warning(
                "Telegram is not answering (attempt %d: %s); trying again in %.1f s",
                failures,
                _reason(exc),
                wait,
            )
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                continue
            return False
        else:
            if failures:
                log.info("Telegram answered after %d failed attempt(s)", failures)
            return True
    return False


def _reason(exc: TelegramError) -> str:
    """One line saying what went wrong, e.g. ``NetworkError: Bad Gateway``."""
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"[:200]


def _seconds(value: object) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(str(value))


def _retry_after(exc: RetryAfter) -> float:
    # Reading the int form warns on every access (PTB_TIMEDELTA); both forms are handled.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        return _seconds(exc.retry_after)


def _polling_failed(exc: TelegramError) -> None:
    """One line per failed poll; PTB itself tries again, waiting up to 30 s."""
    log.warning("fetching updates failed (%s); trying again", _reason(exc))


def _on_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT ask for a clean stop; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def requested(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting at once", name)
            _exit_now(1)
        log.info("%s received", name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, requested, signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            return


def _exit_now(code: int) -> None:
    """Leave without waiting for anything (a database call stuck in a thread, say)."""
    logging.shutdown()
    os._exit(code)
