"""The real bot, built by the composition root, polling the Bot API stand-in over loopback."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from miliabot_tg.app import BotApplication, build_application
from miliabot_tg.broadcaster import Broadcaster
from miliabot_tg.config import Settings
from miliabot_tg.console import ProcessedUpdates
from miliabot_tg.content import Guide, load_guide
from miliabot_tg.db import make_engine, migrate
from miliabot_tg.dispatch import Dispatcher, DispatchPolicy
from miliabot_tg.handlers import Deps
from miliabot_tg.metrics import Metrics
from miliabot_tg.outdoors_handlers import UvService
from miliabot_tg.paths import bundled_dir
from miliabot_tg.standin import DEFAULT_TOKEN, BotMessage, StandIn

USER = 1001
GUIDE = load_guide(bundled_dir("content"))


@dataclass
class FrozenClock:
    """The bot's idea of now; tests move it instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 26, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Harness:
    """A chat session with the running bot, as a user on a phone would have it."""

    standin: StandIn
    app: BotApplication
    engine: Engine
    clock: FrozenClock
    guide: Guide
    processed: ProcessedUpdates
    dispatcher: Dispatcher
    broadcaster: Broadcaster
    allowed: set[str] = field(default_factory=set)
    metrics: Metrics = field(default_factory=Metrics)
    deps: Deps | None = None
    uv: UvService | None = None

    async def say(self, text: str, *, user_id: int = USER, **kwargs: object) -> list[BotMessage]:
        """Send `text` as the user and return the bot messages it caused in that chat."""
        chat_id = kwargs.get("chat_id", user_id)
        assert isinstance(chat_id, int)
        before = len(self.standin.chat(chat_id))
        update_id = self.standin.send_message(text, user_id=user_id, **kwargs)  # type: ignore[arg-type]
        await self.processed.wait(update_id)
        return self.standin.chat(chat_id)[before:]

    async def handled(self, update_id: int) -> None:
        """Wait until the bot has finished with an update queued on the stand-in."""
        await self.processed.wait(update_id)

    async def press(self, label: str, *, chat_id: int = USER) -> BotMessage:
        """Press the button labelled `label` on the newest message with buttons."""
        await self.processed.wait(self.standin.press(chat_id, label))
        last = self.standin.last(chat_id)
        assert last is not None
        return last

    def allow_failures(self, *descriptions: str) -> None:
        """Expect refusals the test provoked on purpose."""
        self.allowed.update(descriptions)

    def failures(self) -> list[str]:
        """Every unexpected refusal, e.g. HTML that Telegram would reject."""
        return [
            str(c)
            for c in self.standin.calls
            if c.status not in (None, 200)
            and (c.response or {}).get("description") not in self.allowed
        ]


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    database_url: str | None = None,
    admin_ids: frozenset[int] = frozenset(),
    chat_rate: float | None = None,
    global_rate: float | None = None,
    dispatch: bool = False,
    clock: Callable[[], datetime] | None = None,
    policy: DispatchPolicy | None = None,
    paid_broadcasts: bool = False,
    uv_api_url: str | None = None,
    uv_timeout: float = 3.0,
    flood_limit: int | None = None,
) -> AsyncIterator[Harness]:
    """Start the stand-in and the real bot against it; stop both afterwards.

    By default the clock is frozen and the dispatcher asleep, so tests run its cycles by
    hand; `dispatch=True` with a real clock lets it wake up on its own. The stand-in's
    rate limits are off unless asked for, and the bot's pacing is set far above them. So is
    the flood throttle: a test is one quick user, and its clock stands still.
    """
    url = database_url or f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    frozen = FrozenClock()
    async with StandIn(chat_rate=chat_rate, global_rate=global_rate) as standin:
        settings = Settings(
            api_url=standin.api_root,
            database_url=url,
            admin_ids=admin_ids,
            global_rate=global_rate or 10_000.0,
            chat_rate=chat_rate or 10_000.0,
            paid_broadcasts=paid_broadcasts,
            # Nothing in the tests reaches the internet: no UV stand-in, a closed port.
            uv_api_url=uv_api_url or "http://127.0.0.1:9",
            uv_timeout_seconds=uv_timeout,
            flood_limit=flood_limit or 1_000_000,
        )
        deps = Deps(settings=settings, engine=engine, guide=GUIDE, clock=clock or frozen)
        built = build_application(deps, DEFAULT_TOKEN, policy=policy, dispatch=dispatch)
        app = built.app
        processed = ProcessedUpdates(app, deps.visits)
        async with app:
            if app.post_init is not None:  # run_polling would call it; we start by hand
                await app.post_init(app)
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            await standin.settle()
            try:
                yield Harness(
                    standin,
                    app,
                    engine,
                    frozen,
                    GUIDE,
                    processed,
                    built.dispatcher,
                    built.broadcaster,
                    metrics=built.metrics,
                    deps=deps,
                    uv=built.uv,
                )
            finally:
                await app.updater.stop()
                await app.stop()
    engine.dispose()
