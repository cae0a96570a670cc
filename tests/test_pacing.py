"""The Pacer: global and per-chat pacing, priorities and 429 handling, on a fake clock.

Unit tests drive ``Pacer.process_request`` directly with a fake Bot API call that records when
it was made; the pacer's only sleeper (its dispatcher) sleeps on a fake clock, so nothing here
sleeps for real except the two end-to-end tests against the Bot API stand-in.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import itertools
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import ApplicationBuilder
from telegram.warnings import PTBDeprecationWarning

from miliabot_tg.pacing import PaceArgs, Pacer, PacerClosedError, Priority, SendAbandonedError
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn

EPS = 1e-9
SLOT = 1 / 30  # the default global spacing
Result = bool | dict[str, Any] | list[dict[str, Any]]


class FakeTime:
    """A clock that moves only when the pacer sleeps, and only once the loop has gone quiet."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Let everything already runnable act first: if the pacer is woken meanwhile, this
        # sleep is cancelled and no time passes, as it would not in real time either.
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += max(seconds, 0.0)


@dataclass(frozen=True)
class Sent:
    at: float
    endpoint: str
    chat_id: object
    text: str


class FakeApi:
    """Stands in for ``Bot._do_post``: records each call and raises the errors it is given."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.calls: list[Sent] = []
        self._errors: dict[object, list[TelegramError]] = {}

    def fail(self, chat_id: object, *errors: TelegramError) -> None:
        """The next calls to ``chat_id`` raise these errors, one each."""
        self._errors.setdefault(chat_id, []).extend(errors)

    async def post(self, endpoint: str, data: dict[str, Any]) -> Result:
        chat_id = data.get("chat_id")
        self.calls.append(Sent(self.time.now, endpoint, chat_id, str(data.get("text", ""))))
        if errors := self._errors.get(chat_id):
            raise errors.pop(0)
        return {"message_id": len(self.calls), "chat": {"id": chat_id}}

    def times(self, *chat_ids: object) -> list[float]:
        return [call.at for call in self.calls if call.chat_id in chat_ids]


async def send(
    pacer: Pacer,
    api: FakeApi,
    chat_id: object,
    *,
    endpoint: str = "sendMessage",
    pace: PaceArgs | None = None,
    text: str = "hi",
) -> Result:
    data = {"chat_id": chat_id, "text": text}
    return await pacer.process_request(api.post, (endpoint, data), {}, endpoint, data, pace)


async def until(condition: Callable[[], object]) -> None:
    """Yield to the loop until ``condition`` holds (no time passes on the fake clock)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def spawn(coros: Iterable[Any]) -> list[asyncio.Task[Result]]:
    return [asyncio.ensure_future(coro) for coro in coros]


@pytest.fixture(autouse=True)
def timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt into PTB's future timedelta form, which spares the deprecation warning noise."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api(fake_time: FakeTime) -> FakeApi:
    return FakeApi(fake_time)


@pytest.fixture
async def pacer(fake_time: FakeTime) -> AsyncIterator[Pacer]:
    pacer = Pacer(clock=fake_time.clock, sleep=fake_time.sleep)
    await pacer.initialize()
    yield pacer
    await pacer.shutdown()


# --- global and per-chat pacing -----------------------------------------------------------------


async def test_global_rate_holds_over_many_chats_without_a_burst(
    pacer: Pacer, api: FakeApi
) -> None:
    await asyncio.gather(*(send(pacer, api, chat) for chat in range(1, 91)))

    times = [call.at for call in api.calls]
    assert len(times) == 90
    assert times[-1] - times[0] >= 89 * SLOT - EPS
    assert min(gaps(times)) >= SLOT - EPS  # fixed spacing: not even a small burst
    # Any 31 consecutive sends span a second or more: no one-second window holds more than 30.
    assert all(
        later - earlier >= 1.0 - EPS for earlier, later in zip(times, times[30:], strict=False)
    )
    assert pacer.stats.sent == 90


async def test_private_chat_sends_are_a_second_apart_without_holding_up_other_chats(
    pacer: Pacer, api: FakeApi
) -> None:
    one_chat = [send(pacer, api, 7, text=str(n)) for n in range(5)]
    others = [send(pacer, api, chat) for chat in range(100, 110)]
    await asyncio.gather(*one_chat, *others)

    assert [call.text for call in api.calls if call.chat_id == 7] == ["0", "1", "2", "3", "4"]
    assert min(gaps(api.times(7))) >= 1.0 - EPS
    # The ten other chats went at the global pace while chat 7 waited out its spacing.
    assert max(api.times(*range(100, 110))) <= 11 * SLOT + EPS


async def test_groups_and_channels_get_twenty_messages_a_minute(pacer: Pacer, api: FakeApi) -> None:
    group = [send(pacer, api, -100123) for _ in range(3)]
    channel = [send(pacer, api, name) for name in ("@News", "@news", "@NEWS")]
    await asyncio.gather(*group, *channel)

    assert min(gaps(api.times(-100123))) >= 3.0 - EPS
    assert min(gaps(api.times("@News", "@news", "@NEWS"))) >= 3.0 - EPS  # one channel


async def test_copies_and_forwards_are_paced_like_sends(pacer: Pacer, api: FakeApi) -> None:
    endpoints = ["sendPhoto", "copyMessage", "forwardMessages", "sendMediaGroup"]
    await asyncio.gather(*(send(pacer, api, 9, endpoint=endpoint) for endpoint in endpoints))

    assert sorted(call.endpoint for call in api.calls) == sorted(endpoints)
    assert min(gaps(api.times(9))) >= 1.0 - EPS


async def test_unpaced_endpoints_pass_at_once_while_paced_sends_queue(
    pacer: Pacer, api: FakeApi, fake_time: FakeTime
) -> None:
    queued = spawn(send(pacer, api, chat) for chat in range(1, 61))
    await until(lambda: len(api.calls) >= 2)
    before = fake_time.now

    unpaced = ["getUpdates", "answerCallbackQuery", "editMessageText", "sendChatAction", "getMe"]
    for endpoint in unpaced:
        await send(pacer, api, 1, endpoint=endpoint)  # chat 1 even has a paced send in flight

    assert fake_time.now == before
    assert [(call.endpoint, call.at) for call in api.calls if call.endpoint in unpaced] == [
        (endpoint, before) for endpoint in unpaced
    ]
    assert sum(call.endpoint == "sendMessage" for call in api.calls) < 60  # still queued
    await asyncio.gather(*queued)


async def test_global_rate_can_be_changed_at_runtime(pacer: Pacer, api: FakeApi) -> None:
    await asyncio.gather(*(send(pacer, api, chat) for chat in range(1, 6)))
    pacer.global_rate = 2.0  # e.g. a second bot process now shares the limit
    await asyncio.gather(*(send(pacer, api, chat) for chat in range(11, 16)))

    assert max(gaps(api.times(*range(1, 6)))) <= SLOT + EPS
    assert min(gaps(api.times(*range(11, 16)))) >= 0.5 - EPS
    with pytest.raises(ValueError, match="positive"):
        pacer.global_rate = 0


async def test_idle_chats_are_forgotten(pacer: Pacer, api: FakeApi, fake_time: FakeTime) -> None:
    await asyncio.gather(*(send(pacer, api, chat) for chat in range(1, 101)))
    assert pacer.tracked_chats == 100

    fake_time.now += 120
    await send(pacer, api, 1000)

    assert pacer.tracked_chats == 1


# --- priorities ---------------------------------------------------------------------------------


async def test_replies_and_reminders_overtake_broadcasts_queued_before_them(
    pacer: Pacer, api: FakeApi
) -> None:
    broadcast = PaceArgs(Priority.BROADCAST)
    broadcasts = spawn(send(pacer, api, 1000 + n, pace=broadcast) for n in range(5))
    await until(lambda: api.calls)  # the first broadcast holds the current slot
    reminders = spawn(
        send(pacer, api, 2000 + n, pace=PaceArgs(Priority.REMINDER)) for n in range(3)
    )
    replies = spawn(send(pacer, api, 3000 + n) for n in range(3))
    await asyncio.gather(*broadcasts, *reminders, *replies)

    order = [call.chat_id for call in api.calls]
    assert order == [1000, 3000, 3001, 3002, 2000, 2001, 2002, 1001, 1002, 1003, 1004]
    # The broadcast delayed the first reply by at most the one slot it already held.
    assert api.times(3000)[0] <= SLOT + EPS


async def test_a_reply_overtakes_a_broadcast_queued_for_the_same_chat(
    pacer: Pacer, api: FakeApi
) -> None:
    broadcast = PaceArgs(Priority.BROADCAST)
    news = spawn(send(pacer, api, 5, pace=broadcast, text=f"news {n}") for n in range(2))
    await until(lambda: api.calls)
    reply = spawn([send(pacer, api, 5, text="reply")])
    await asyncio.gather(*news, *reply)

    assert [call.text for call in api.calls] == ["news 0", "reply", "news 1"]
    assert min(gaps(api.times(5))) >= 1.0 - EPS


# --- 429s and other errors ----------------------------------------------------------------------


def flood(seconds: float) -> RetryAfter:
    return RetryAfter(dtm.timedelta(seconds=seconds))


async def test_retry_after_pauses_all_paced_traffic_then_retries(
    pacer: Pacer, api: FakeApi
) -> None:
    api.fail(7, flood(5))
    first = spawn([send(pacer, api, 7, text="flooded")])
    await until(lambda: api.calls)  # the 429 has come back
    others = spawn(send(pacer, api, chat) for chat in (8, 9))
    await asyncio.gather(*first, *others)

    assert [call.at for call in api.calls if call.chat_id == 7] == [0.0, pytest.approx(5.0)]
    assert min(api.times(8, 9)) >= 5.0 - EPS  # other chats waited out the pause too
    assert (pacer.stats.rate_limited, pacer.stats.retries, pacer.stats.sent) == (1, 1, 3)
    assert pacer.stats.wait_max >= 5.0 - EPS


@pytest.mark.parametrize(
    ("pace", "attempts"),
    [(None, 4), (PaceArgs(Priority.REMINDER), 4), (PaceArgs(max_retries=1), 2)],
)
async def test_retry_after_is_reraised_after_max_retries(
    pacer: Pacer, api: FakeApi, pace: PaceArgs | None, attempts: int
) -> None:
    api.fail(7, *(flood(2) for _ in range(10)))

    with pytest.raises(RetryAfter):
        await send(pacer, api, 7, pace=pace)

    assert len(api.times(7)) == attempts
    assert min(gaps(api.times(7))) >= 2.0 - EPS
    assert (pacer.stats.rate_limited, pacer.stats.retries) == (attempts, attempts - 1)


async def test_max_retries_zero_reraises_at_once_but_still_pauses_everyone(
    pacer: Pacer, api: FakeApi, fake_time: FakeTime
) -> None:
    api.fail(7, flood(30))

    with pytest.raises(RetryAfter):
        await send(pacer, api, 7, pace=PaceArgs(Priority.REMINDER, max_retries=0))
    assert fake_time.now == 0.0  # no waiting while, say, a database claim is held

    await send(pacer, api, 8)
    assert api.times(8) == [pytest.approx(30.0)]


@pytest.mark.parametrize("opt_in", [True, False])
async def test_retry_after_is_read_as_int_or_timedelta(
    pacer: Pacer, api: FakeApi, monkeypatch: pytest.MonkeyPatch, opt_in: bool
) -> None:
    if opt_in:
        error = RetryAfter(dtm.timedelta(seconds=3))
        with pytest.raises(RetryAfter) as seen:
            raise error
        assert seen.value.retry_after == dtm.timedelta(seconds=3)
    else:
        monkeypatch.delenv("PTB_TIMEDELTA")
        with pytest.warns(PTBDeprecationWarning):  # PTB itself warns when making one
            error = RetryAfter(3)
    api.fail(7, error)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the pacer adds no warning of its own
        await send(pacer, api, 7)

    assert api.times(7) == [0.0, pytest.approx(3.0)]


@pytest.mark.parametrize(
    "error",
    [Forbidden("bot was blocked"), BadRequest("chat not found"), TimedOut(), NetworkError("x")],
)
async def test_other_errors_pass_through_unchanged_at_once(
    pacer: Pacer, api: FakeApi, fake_time: FakeTime, error: TelegramError
) -> None:
    api.fail(7, error)

    with pytest.raises(TelegramError) as caught:
        await send(pacer, api, 7)
    assert caught.value is error
    assert fake_time.now == 0.0

    await send(pacer, api, 8)  # no pause for anyone else
    assert api.times(8) == [pytest.approx(SLOT)]
    assert (len(api.times(7)), pacer.stats.retries, pacer.stats.rate_limited) == (1, 0, 0)


# --- lifecycle ----------------------------------------------------------------------------------


async def test_shutdown_releases_waiting_requests(fake_time: FakeTime, api: FakeApi) -> None:
    pacer = Pacer(clock=fake_time.clock, sleep=fake_time.sleep)
    await pacer.initialize()
    waiting = spawn(send(pacer, api, 7) for _ in range(5))
    await until(lambda: api.calls)

    await pacer.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)

    assert isinstance(results[0], dict)
    assert all(isinstance(result, PacerClosedError) for result in results[1:])
    with pytest.raises(PacerClosedError):
        await send(pacer, api, 8)
    await pacer.initialize()  # PTB re-initialises a bot after a shutdown
    assert await send(pacer, api, 8)
    await pacer.shutdown()


async def test_a_cancelled_request_gives_up_its_place(pacer: Pacer, api: FakeApi) -> None:
    tasks = spawn(send(pacer, api, 7, text=str(n)) for n in range(3))
    await until(lambda: api.calls)
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[1], asyncio.CancelledError)
    assert [call.text for call in api.calls] == ["0", "2"]
    assert gaps(api.times(7)) == [pytest.approx(1.0)]


# --- end to end: the real PTB stack against the Bot API stand-in -------------------------------


async def test_real_bot_stays_within_the_standins_limits() -> None:
    pacer = Pacer()
    async with StandIn(global_rate=30.0, chat_rate=1.0) as standin:
        app = (
            ApplicationBuilder()
            .token(DEFAULT_TOKEN)
            .base_url(f"{standin.api_root}/bot")
            .rate_limiter(pacer)
            .build()
        )
        await app.initialize()
        try:
            broadcast = PaceArgs(Priority.BROADCAST)
            await asyncio.gather(
                *(
                    app.bot.send_message(c, f"news {c}", rate_limit_args=broadcast)
                    for c in range(1, 41)
                ),
                *(app.bot.send_message(500, f"part {n}") for n in range(3)),
            )
        finally:
            await app.shutdown()

    assert standin.rate_limited == 0
    assert all(len(standin.chat(chat)) == 1 for chat in range(1, 41))
    assert [message.text for message in standin.chat(500)] == ["part 0", "part 1", "part 2"]
    arrivals = [
        call.at for call in standin.calls_to("sendMessage") if call.params["chat_id"] == 500
    ]
    assert min(gaps(arrivals)) >= 1.0
    assert pacer.stats.sent == 43


async def test_a_429_from_the_standin_is_absorbed_by_a_retry() -> None:
    pacer = Pacer()
    async with StandIn(global_rate=30.0, chat_rate=1.0) as standin:
        app = ApplicationBuilder().token(DEFAULT_TOKEN).base_url(f"{standin.api_root}/bot")
        bot_app = app.rate_limiter(pacer).build()
        await bot_app.initialize()
        try:
            standin.fail_next("sendMessage", status=429, retry_after=1)
            message = await bot_app.bot.send_message(5, "after the pause")
        finally:
            await bot_app.shutdown()

    assert message.text == "after the pause"
    calls = standin.calls_to("sendMessage")
    assert [call.status for call in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0
    assert (pacer.stats.rate_limited, pacer.stats.retries, pacer.stats.sent) == (1, 1, 1)


# --- sends on the wire, and a last look before sending ------------------------------------------


class GatedApi:
    """A Bot API whose answers wait until the test lets them through."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.gate = asyncio.Event()

    async def post(self, endpoint: str, data: dict[str, Any]) -> Result:
        self.started.append(int(data["chat_id"]))
        await self.gate.wait()
        return {"message_id": len(self.started), "chat": {"id": data.get("chat_id")}}


async def test_at_most_max_in_flight_sends_are_on_the_wire(fake_time: FakeTime) -> None:
    pacer = Pacer(global_rate=1000, max_in_flight=3, clock=fake_time.clock, sleep=fake_time.sleep)
    api = GatedApi()

    def call(chat_id: int) -> Any:
        data = {"chat_id": chat_id, "text": "hi"}
        return pacer.process_request(api.post, ("sendMessage", data), {}, "sendMessage", data, None)

    tasks = spawn(call(chat) for chat in range(1, 11))
    await until(lambda: len(api.started) == 3)
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(api.started) == 3, "the fourth waits for a send to finish"
    api.gate.set()
    await asyncio.gather(*tasks)
    assert sorted(api.started) == list(range(1, 11))
    await pacer.shutdown()


async def test_a_request_waiting_for_its_chat_holds_no_slot_on_the_wire(
    fake_time: FakeTime, api: FakeApi
) -> None:
    """One chat with many messages queued first cannot keep other chats off the wire."""
    pacer = Pacer(
        global_rate=1000, chat_rate=1, max_in_flight=2, clock=fake_time.clock, sleep=fake_time.sleep
    )
    busy = spawn(send(pacer, api, 7) for _ in range(20))
    others = spawn(send(pacer, api, chat) for chat in range(100, 110))
    await asyncio.gather(*others)
    assert len(api.times(7)) <= 2, "the busy chat sent at most one per second meanwhile"
    assert max(api.times(*range(100, 110))) < 1.0
    await asyncio.gather(*busy)
    await pacer.shutdown()


async def test_go_ahead_is_asked_when_the_turn_comes_and_can_drop_the_request(
    pacer: Pacer, api: FakeApi, fake_time: FakeTime
) -> None:
    await send(pacer, api, 5)  # the chat is now spaced for a second
    asked: list[float] = []

    def go_ahead() -> bool:
        asked.append(fake_time.now)
        return False

    with pytest.raises(SendAbandonedError):
        await send(pacer, api, 5, pace=PaceArgs(go_ahead=go_ahead))
    assert asked == [pytest.approx(1.0)], "asked once, at the moment of sending, not queueing"
    assert len(api.calls) == 1, "nothing was sent"
    await send(pacer, api, 5, pace=PaceArgs(go_ahead=lambda: True))
    assert len(api.calls) == 2, "the chat and the slot were given back"
