"""The database is a network service that can be stuck or gone: the bot keeps answering
what needs no database, answers the rest once, and sends what fell due once it is back."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miliabot_tg import texts
from miliabot_tg.standin import BotMessage
from tests.harness import USER, Harness, running_bot
from tests.stalling_proxy import stalling_proxy

DUE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
# A bot whose event loop waits on the stuck database answers only when the proxy gives
# up stalling, this long after it began: far beyond any bound the tests check.
STALL_LIMIT = 15.0
# Each guide answer during the stall must arrive within this; a blocked loop cannot.
ANSWER_WITHIN = 1.0


class RunningClock:
    """Real time, from a chosen moment; held still until released (while the bot starts)."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._released_at: float | None = None

    def __call__(self) -> datetime:
        if self._released_at is None:
            return self._start
        return self._start + timedelta(seconds=time.monotonic() - self._released_at)

    def release(self) -> None:
        self._released_at = time.monotonic()


@asynccontextmanager
async def loop_watch(tick: float = 0.02) -> AsyncIterator[list[float]]:
    """Record how late the event loop ran a callback due every `tick` seconds."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def watch() -> None:
        while True:
            expected = loop.time() + tick
            await asyncio.sleep(tick)
            lags.append(loop.time() - expected)

    task = asyncio.create_task(watch())
    try:
        yield lags
    finally:
        task.cancel()


def reminders_in(messages: list[BotMessage]) -> list[BotMessage]:
    """The reminder messages: those with Done/Snooze/Skip buttons."""
    return [m for m in messages if any(d.startswith("occ:") for d in m.callback_data())]


def apologies_in(messages: list[BotMessage]) -> list[BotMessage]:
    return [m for m in messages if m.plain == texts.SOMETHING_WENT_WRONG]


async def timed_say(h: Harness, text: str) -> tuple[list[BotMessage], float]:
    """Send `text`; return the replies and how long they took to arrive."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        replies = await h.say(text)
    except TimeoutError:
        return [], loop.time() - started  # not handled within the harness's patience
    return replies, loop.time() - started


@pytest.mark.postgres
@pytest.mark.parametrize("reset", [False, True], ids=["connections-resume", "database-restarted"])
async def test_a_stuck_database_holds_up_no_guide_answer_and_due_reminders_follow(
    tmp_path: Path, postgres_url: str, reset: bool
) -> None:
    clock = RunningClock(DUE - timedelta(seconds=2))
    with stalling_proxy(postgres_url) as proxy:
        async with running_bot(
            tmp_path, database_url=proxy.url(postgres_url), dispatch=True, clock=clock
        ) as h:
            await h.say("/start")
            (added, *_) = await h.say("/remind sunscreen 09:00 daily")
            assert "09:00" in added.plain

            # The database stops answering; packets go in, nothing comes back.
            proxy.stall(at_most=STALL_LIMIT)
            clock.release()
            async with loop_watch() as lags:
                # Let the reminder fall due while the database is stuck, so the dispatcher
                # is stuck on it too while people ask the guide. The dispatcher runs on
                # real time here: this is the one wait that cannot be frozen away.
                await asyncio.sleep((DUE + timedelta(seconds=0.5) - clock()).total_seconds())
                answers = [await timed_say(h, t) for t in ("/guide", "/help", "what are milia")]
            assert proxy.held_bytes > 0, "the bot did try the database during the stall"
            for (replies, took), text in zip(answers, ("/guide", "/help", "search"), strict=True):
                assert took < ANSWER_WITHIN, f"{text} took {took:.2f} s while the database stalled"
                assert len(replies) == 1, text
                assert replies[0].plain != texts.SOMETHING_WENT_WRONG, text
            assert max(lags) < ANSWER_WITHIN / 2, f"the event loop stalled for {max(lags):.2f} s"
            assert reminders_in(h.standin.chat(USER)) == []

            # The database is back: what fell due during the stall goes out, once.
            proxy.resume(reset=reset)
            await h.standin.wait_for(lambda: reminders_in(h.standin.chat(USER)), timeout=20)
            await h.standin.settle(quiet=0.5)
            (reminder,) = reminders_in(h.standin.chat(USER))
            assert "sunscreen" in reminder.plain.lower()
            assert apologies_in(h.standin.chat(USER)) == []
            assert h.failures() == []


@pytest.mark.postgres
async def test_during_an_outage_the_guide_answers_and_the_rest_apologises_once(
    tmp_path: Path, postgres_url: str
) -> None:
    with stalling_proxy(postgres_url) as proxy:
        async with running_bot(tmp_path, database_url=proxy.url(postgres_url)) as h:
            await h.say("/start")
            h.clock.advance(timedelta(hours=1))  # so each message would update last_seen
            proxy.refuse()

            (menu,) = await h.say("/guide")
            assert menu.plain.startswith("📖 The milia guide")
            (found,) = await h.say("baby milia")
            assert found.plain != texts.SOMETHING_WENT_WRONG
            (apology,) = await h.say("/reminders")
            assert apology.plain == texts.SOMETHING_WENT_WRONG
            (apology,) = await h.say("/remind sunscreen 08:00 daily")
            assert apology.plain == texts.SOMETHING_WENT_WRONG

            proxy.resume()
            (listing,) = await h.say("/reminders")
            assert listing.plain != texts.SOMETHING_WENT_WRONG
            assert h.failures() == []
