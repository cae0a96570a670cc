"""One user's flood of messages neither reaches the database nor slows anyone else's answer."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from telegram import Chat, Message, Update, User
from telegram.ext import ApplicationHandlerStop, SimpleUpdateProcessor

from miliabot_tg import repo
from miliabot_tg.db import new_session
from miliabot_tg.inbound import (
    GUARD_GROUP,
    SLOW_DOWN,
    SLOW_DOWN_BUTTON,
    Inbound,
    LaneProcessor,
    Throttle,
    Verdict,
)
from tests.harness import USER, FrozenClock, Harness, running_bot

OTHER = 2002


# --- the throttle's window, on a fake clock ------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_allows_the_limit_then_one_note_then_silence() -> None:
    clock = Clock()
    throttle = Throttle(limit=3, window=10.0, clock=clock)
    verdicts = [throttle.admit(USER) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW] * 3 + [Verdict.NOTE] + [Verdict.SILENT] * 2
    assert throttle.admit(OTHER) is Verdict.ALLOW, "users have windows of their own"


def test_throttle_opens_a_new_window_after_the_old_one_ends() -> None:
    clock = Clock()
    throttle = Throttle(limit=2, window=10.0, clock=clock)
    first = [throttle.admit(USER) for _ in range(4)]
    clock.now += 9.9
    assert throttle.admit(USER) is Verdict.SILENT, "the window counts from the first update"
    clock.now += 0.1
    second = [throttle.admit(USER) for _ in range(4)]
    assert first == second == [Verdict.ALLOW, Verdict.ALLOW, Verdict.NOTE, Verdict.SILENT]


def test_throttle_forgets_users_whose_window_ended() -> None:
    clock = Clock()
    throttle = Throttle(limit=20, window=10.0, clock=clock)
    for second in range(1000):
        clock.now += 1.0
        for user in range(50):
            throttle.admit(second * 50 + user)  # 50 new users every second
        assert len(throttle) <= 500, "only the users of the last 10 seconds are kept"
    assert len(throttle) == 500


def test_throttle_restarts_the_window_when_the_clock_goes_back() -> None:
    clock = Clock()
    throttle = Throttle(limit=1, window=10.0, clock=clock)
    assert [throttle.admit(USER) for _ in range(2)] == [Verdict.ALLOW, Verdict.NOTE]
    clock.now -= 3600
    assert throttle.admit(USER) is Verdict.ALLOW


# --- lanes: a chat holds at most one processing slot ---------------------------------------


def _update(update_id: int, chat_id: int) -> Update:
    user = User(id=chat_id, first_name="Ann", is_bot=False)
    chat = Chat(id=chat_id, type=Chat.PRIVATE)
    message = Message(update_id, datetime.now(UTC), chat, from_user=user, text="hello")
    return Update(update_id, message=message)


async def _slow_chat_and_a_quick_one(
    processor: Any,
) -> tuple[list[int], asyncio.Event, Callable[[], Awaitable[None]]]:
    """Five updates of chat 1 stuck (as if waiting for pacing), then one of chat 2."""
    started: list[int] = []
    unstick = asyncio.Event()
    other_done = asyncio.Event()

    async def stuck(update_id: int) -> None:
        started.append(update_id)
        await unstick.wait()

    async def quick() -> None:
        other_done.set()

    tasks = [
        asyncio.create_task(processor.process_update(_update(i, 1), stuck(i))) for i in range(5)
    ]
    tasks.append(asyncio.create_task(processor.process_update(_update(9, 2), quick())))

    async def finish() -> None:
        unstick.set()
        await asyncio.gather(*tasks)

    return started, other_done, finish


async def test_a_chat_waiting_in_its_lane_holds_no_slot_another_chat_needs() -> None:
    inbound = Inbound(limit=100, window=10.0, clock=lambda: datetime.now(UTC))
    processor = LaneProcessor(inbound, slots=2)
    started, other_done, finish = await _slow_chat_and_a_quick_one(processor)
    await asyncio.wait_for(other_done.wait(), timeout=5)
    assert started == [0], "the chat's later updates wait in its lane, not in a slot"
    assert processor.lanes == 1
    await finish()
    assert started == [0, 1, 2, 3, 4], "a chat's updates run in the order they came"
    assert processor.lanes == 0, "an empty lane is forgotten"


async def test_without_lanes_the_stuck_chat_takes_every_slot() -> None:
    """The failure the lanes fix, shown with python-telegram-bot's plain processor."""
    processor = SimpleUpdateProcessor(2)
    started, other_done, finish = await _slow_chat_and_a_quick_one(processor)
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == [0, 1] and not other_done.is_set()
    await finish()


# --- through the real bot -----------------------------------------------------------------


def _processor(bot: Harness) -> LaneProcessor:
    processor = bot.app.update_processor
    assert isinstance(processor, LaneProcessor)
    return processor


async def _quiet(bot: Harness) -> None:
    """Wait until every queued update was fetched and processed, dropped ones included."""
    await bot.standin.settle(timeout=60)
    await asyncio.wait_for(_processor(bot).idle(), timeout=60)
    await bot.standin.settle(timeout=60)


def _sends(bot: Harness) -> list[int]:
    """The chat of every message the bot sent, in the order they reached Telegram."""
    return [int(c.params["chat_id"]) for c in bot.standin.calls_to("sendMessage") if c.ok]


def _notes(bot: Harness, chat_id: int = USER) -> int:
    return sum(1 for m in bot.standin.chat(chat_id) if m.text == SLOW_DOWN)


async def test_a_flood_gets_one_note_and_another_user_is_answered_first(tmp_path: Path) -> None:
    # 20 a second per chat, as in the report that found 0.03 s turning into 7.7 s.
    async with running_bot(tmp_path, chat_rate=20, flood_limit=20) as bot:
        for n in range(300):
            bot.standin.send_message(f"sunscreen {n}", user_id=USER)
        other = bot.standin.send_message("/guide", user_id=OTHER, first_name="Bea")
        await bot.handled(other)
        await _quiet(bot)
        sends = _sends(bot)
        assert sends.count(USER) == 21, "20 answers and one note"
        assert _notes(bot) == 1
        assert bot.standin.chat(OTHER)[0].plain.startswith("📖 The milia guide")
        # The other user's answer did not wait for the flood's backlog to drain.
        assert sends.index(OTHER) < len(sends) - 1 - sends[::-1].index(USER)
        assert bot.failures() == []


async def test_lanes_keep_a_flood_from_delaying_others_even_unthrottled(tmp_path: Path) -> None:
    # No throttle: all 300 are answered, paced at 50 a second, over about six seconds. With
    # 256 shared slots and no lanes the other user would wait for 45 of them to finish first.
    async with running_bot(tmp_path, chat_rate=50) as bot:
        for n in range(300):
            bot.standin.send_message(f"sunscreen {n}", user_id=USER)
        other = bot.standin.send_message("/guide", user_id=OTHER, first_name="Bea")
        await bot.handled(other)
        before = _sends(bot)
        assert OTHER in before
        assert before.index(OTHER) < 40, before.index(OTHER)
        await _quiet(bot)
        assert _sends(bot).count(USER) == 300
        assert bot.failures() == []


async def test_throttled_updates_never_reach_the_database(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url, flood_limit=5) as bot:
        for n in range(5):
            await bot.say(f"sunscreen {n}")
        statements: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            statements.append(statement)

        event.listen(bot.engine, "before_cursor_execute", count)
        try:
            # A new name would be written down by any visit that got as far as recording it.
            for n in range(50):
                bot.standin.send_message(f"moisturize {n}", first_name="Mallory")
            await _quiet(bot)
        finally:
            event.remove(bot.engine, "before_cursor_execute", count)
        assert statements == []
        with new_session(bot.engine) as session:
            user = repo.get_user(session=session, user_id=USER)
        assert user is not None and user.first_name == "Ann"
        assert len(bot.standin.chat(USER)) == 6, "five answers and one note"
        assert _notes(bot) == 1
        assert bot.failures() == []


async def test_each_window_gets_one_note_and_then_answers_resume(tmp_path: Path) -> None:
    async with running_bot(tmp_path, flood_limit=3) as bot:
        clock: FrozenClock = bot.clock
        for _window in range(3):
            for n in range(10):
                bot.standin.send_message(f"sunscreen {n}")
            await _quiet(bot)
            clock.advance(timedelta(seconds=10))
        assert len(bot.standin.chat(USER)) == 3 * 4
        assert _notes(bot) == 3
        (answer,) = await bot.say("how do I exfoliate")
        assert answer.text != SLOW_DOWN, "a new window answers again"
        assert bot.failures() == []


async def test_pressed_buttons_over_the_limit_are_still_answered(tmp_path: Path) -> None:
    async with running_bot(tmp_path, flood_limit=2) as bot:
        await bot.say("/guide")
        menu = bot.standin.last(USER)
        assert menu is not None
        for _ in range(4):
            bot.standin.press(USER, menu.buttons[0][0][0], message_id=menu.message_id)
        await _quiet(bot)
        answers = [a.text for a in bot.standin.answered_callbacks]
        # One press answered by the guide, one with the note, the rest bare (the spinner stops).
        assert len(answers) == 4
        assert answers[1:] == [SLOW_DOWN_BUTTON, None, None]
        assert _notes(bot) == 0, "no chat message for a button"
        assert bot.failures() == []


async def test_the_guard_works_and_forgets_without_the_lane_processor() -> None:
    inbound = Inbound(limit=1, window=10.0, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    stopped = 0

    class Bot:
        async def send_message(self, chat_id: int, text: str) -> None:
            assert text == SLOW_DOWN

    class Context:
        bot = Bot()

    for n in range(3):
        try:
            await inbound.guard(_update(n, USER), Context())  # type: ignore[arg-type]
        except ApplicationHandlerStop:
            stopped += 1
    assert stopped == 2
    assert inbound._verdicts == {}


async def test_no_note_is_sent_into_a_group() -> None:
    inbound = Inbound(limit=1, window=10.0, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    class Bot:
        async def send_message(self, chat_id: int, text: str) -> None:
            raise AssertionError("a note went to the group")

    class Context:
        bot = Bot()

    group = Chat(id=-100, type=Chat.GROUP)
    user = User(id=USER, first_name="Ann", is_bot=False)
    for n in range(3):
        message = Message(n, datetime.now(UTC), group, from_user=user, text="/guide")
        with contextlib.suppress(ApplicationHandlerStop):
            await inbound.guard(Update(n, message=message), Context())  # type: ignore[arg-type]


async def test_the_guard_has_a_handler_group_before_all_others_to_itself(
    tmp_path: Path,
) -> None:
    # Only the first matching handler of a group runs: sharing one would hide the other.
    async with running_bot(tmp_path) as bot:
        # Only the log context (it sets a context variable, nothing more) runs before it.
        earlier = [h for g in bot.app.handlers if g < GUARD_GROUP for h in bot.app.handlers[g]]
        assert [h.callback.__name__ for h in earlier] == ["_note_update"]
        assert len(bot.app.handlers[GUARD_GROUP]) == 1
