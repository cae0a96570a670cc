"""Outdoor mode: reapply reminders planned from the UV forecast, delivered by the reminder
engine, ending by themselves, and surviving a restart."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from miliabot_tg.db import new_session
from miliabot_tg.models import Occurrence, OccurrenceStatus, Reminder
from miliabot_tg.outdoors import REAPPLY, REAPPLY_DEADLINE
from miliabot_tg.standin import BotMessage
from miliabot_tg.standin.uv import Sky, UvStandIn
from miliabot_tg.uv import rounded
from tests.harness import USER, Harness, running_bot

LISBON = (38.72, -9.14)
NINE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # 09:00 in Lisbon (UTC+0 in November)


@pytest.fixture
async def uv() -> AsyncIterator[UvStandIn]:
    async with UvStandIn() as server:
        yield server


@pytest.fixture
async def bot(tmp_path: Path, uv: UvStandIn, database_url: str) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, database_url=database_url, uv_api_url=uv.url) as harness:
        uv.clock = harness.clock
        yield harness


def labels(message: BotMessage) -> list[str]:
    return [label for row in message.buttons for label, _ in row]


def planned(bot: Harness, user_id: int = USER) -> list[Occurrence]:
    """The user's reapply reminders still waiting to be sent."""
    with new_session(bot.engine) as session:
        return list(
            session.exec(
                select(Occurrence)
                .join(Reminder, col(Reminder.id) == col(Occurrence.reminder_id))
                .where(
                    col(Reminder.user_id) == user_id,
                    col(Reminder.kind) == REAPPLY,
                    col(Occurrence.status) == OccurrenceStatus.PENDING.value,
                )
                .order_by(col(Occurrence.due_at))
            )
        )


def at(hour: int, minute: int = 0) -> datetime:
    return NINE.replace(hour=hour, minute=minute)


async def keep_location(bot: Harness, lat: float, lon: float, user_id: int = USER) -> None:
    await bot.say("/start", user_id=user_id)
    await bot.handled(bot.standin.send_location(lat, lon, user_id=user_id))
    await bot.press("✅ Yes, keep it", chat_id=user_id)


async def send_due(bot: Harness, when: datetime, user_id: int = USER) -> list[BotMessage]:
    """Move the clock, prefetch as the job would, run the dispatcher; return what was sent."""
    bot.clock.now = when
    assert bot.uv is not None
    await bot.uv.prefetch()
    before = len(bot.standin.chat(user_id))
    await bot.dispatcher.run_cycle()
    return bot.standin.chat(user_id)[before:]


async def test_outdoors_plans_reapply_reminders_from_the_forecast(
    bot: Harness, uv: UvStandIn
) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert answer.plain.startswith("🌳 Outdoor mode is on.")
    # UV is 3+ from 09:00 to 17:00 (peak 7): every 2 hours from now while it lasts.
    assert "reapply at 11:00, 13:00 and 15:00" in answer.plain
    assert "UV stays below 3" in answer.plain
    assert "Weather data by Open-Meteo.com" in answer.plain
    assert labels(answer) == ["🏊 I'm swimming", "🏠 I'm inside now"]
    rows = planned(bot)
    assert [o.due_at for o in rows] == [at(11), at(13), at(15)]
    assert all(o.expires_at == o.due_at + REAPPLY_DEADLINE for o in rows)

    (sent,) = await send_due(bot, at(11))
    assert sent.plain.startswith("🧴 Time to reapply sunscreen")
    assert "The UV index is about 7 now (where you are)." in sent.plain
    assert "Weather data by Open-Meteo.com" in sent.plain
    assert labels(sent) == ["✅ Done", "🏊 I'm swimming", "🏠 I'm inside now"]
    assert "last one" not in sent.plain
    (last,) = await send_due(bot, at(15))  # 13:00's was missed: outage longer than its hour
    assert "That's the last one today" in last.plain
    assert await send_due(bot, at(17)) == []
    assert bot.failures() == []

    # The hidden reminder is no one's business in /reminders.
    (listing,) = await bot.say("/reminders")
    assert "eapply" not in listing.plain


async def test_outdoors_ends_at_sunset(bot: Harness, uv: UvStandIn) -> None:
    await keep_location(bot, *LISBON)
    uv.default = Sky(zone="Europe/Lisbon", reported_sunset=14.0)
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert "reapply at 11:00 and 13:00; the sun sets at 14:00" in answer.plain
    assert [o.due_at for o in planned(bot)] == [at(11), at(13)]


async def test_a_day_with_uv_below_3_needs_no_reapplying(bot: Harness, uv: UvStandIn) -> None:
    await keep_location(bot, *LISBON)
    uv.default = Sky(zone="Europe/Lisbon", peak=2.4, sunrise=8.0, sunset=17.0)
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert "UV stays below 3 for the rest of today" in answer.plain
    assert "UV up to 2 today" in answer.plain
    assert planned(bot) == []


async def test_late_in_the_day_outdoor_mode_ends_with_the_uv(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = at(16)  # UV 3+ until 17:00 only: nothing left at 18:00
    (answer,) = await bot.say("/outdoors")
    assert "no need to reapply" in answer.plain
    assert planned(bot) == []


async def test_im_inside_now_ends_it(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = NINE
    await bot.say("/outdoors")
    (again,) = await bot.say("/outdoors")
    assert again.plain.startswith("🌳 Outdoor mode is on. Next reapply reminders: 11:00")
    answer = await bot.press("🏠 I'm inside now")
    assert answer.plain.startswith("🏠 Outdoor mode is off.")
    assert planned(bot) == []
    assert await send_due(bot, at(11)) == []
    assert await send_due(bot, at(13)) == []
    await bot.press("🏠 I'm inside now")
    last = bot.standin.last(USER)
    assert last is not None and last.plain == "🏠 Outdoor mode was already off."


async def test_swimming_adds_one_reapply_after_40_minutes(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = NINE
    await bot.say("/outdoors")
    bot.clock.now = at(9, 30)
    answer = await bot.press("🏊 I'm swimming")
    assert "I'll remind you at 10:10" in answer.plain
    assert [o.due_at for o in planned(bot)] == [at(10, 10), at(11), at(13), at(15)]
    (sent,) = await send_due(bot, at(10, 10))
    assert sent.plain.startswith("🧴 Time to reapply sunscreen")


async def test_without_uv_data_it_reminds_every_2_hours_until_16(bot: Harness) -> None:
    await bot.say("/start")  # no location, no city: no forecast
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert "reapply at 11:00, 13:00 and 15:00; then I stop at 16:00" in answer.plain
    assert "I have no UV forecast for you right now" in answer.plain
    assert "Open-Meteo" not in answer.plain
    (sent,) = await send_due(bot, at(11))
    assert "No UV forecast at hand: I remind you every 2 hours until 16:00." in sent.plain
    assert "last one" not in sent.plain
    (last,) = await send_due(bot, at(15))
    assert "That's the last one today" in last.plain


async def test_a_failing_service_falls_back_and_says_so(bot: Harness, uv: UvStandIn) -> None:
    await keep_location(bot, *LISBON)
    uv.fault = "error"
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert "I have no UV forecast for you right now" in answer.plain
    assert [o.due_at for o in planned(bot)] == [at(11), at(13), at(15)]


async def test_a_hanging_service_delays_the_answer_only_briefly(tmp_path: Path) -> None:
    async with (
        UvStandIn(fault="timeout", hang_seconds=10.0) as uv,
        running_bot(tmp_path, uv_api_url=uv.url, uv_timeout=8.0) as bot,
    ):
        uv.clock = bot.clock
        await keep_location(bot, *LISBON)
        bot.clock.now = NINE
        loop = asyncio.get_running_loop()
        started = loop.time()
        (answer,) = await bot.say("/outdoors")
        assert loop.time() - started < 5, "the reply's deadline (2 s), not the fetch's 8 s"
        assert "I have no UV forecast for you right now" in answer.plain
        assert bot.uv is not None
        await bot.uv.client.close()  # stop the fetch still waiting in the background


async def test_too_late_without_data(bot: Harness) -> None:
    await bot.say("/start")
    bot.clock.now = at(14, 30)
    (answer,) = await bot.say("/outdoors")
    assert answer.plain.startswith("🌇 It's late in the day")
    assert planned(bot) == []


async def test_the_morning_sunscreen_button_turns_it_on(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    await bot.say("/remind sunscreen 08:00 daily")
    (reminder,) = await send_due(bot, datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    assert "🌳 I'm outside today" in labels(reminder)
    await bot.press("🌳 I'm outside today")
    answer = bot.standin.last(USER)
    assert answer is not None and answer.plain.startswith("🌳 Outdoor mode is on.")
    day = datetime(2026, 11, 27, tzinfo=UTC)
    assert [o.due_at for o in planned(bot)] == [
        day.replace(hour=10),
        day.replace(hour=12),
        day.replace(hour=14),
        day.replace(hour=16),
    ]


async def test_outdoor_mode_survives_a_restart(tmp_path: Path, uv: UvStandIn) -> None:
    async with running_bot(tmp_path, uv_api_url=uv.url) as bot:
        uv.clock = bot.clock
        await keep_location(bot, *LISBON)
        bot.clock.now = NINE
        await bot.say("/outdoors")
    # A new process on the same database, with nothing in memory.
    async with running_bot(tmp_path, uv_api_url=uv.url) as bot:
        uv.clock = bot.clock
        assert [o.due_at for o in planned(bot)] == [at(11), at(13), at(15)]
        (sent,) = await send_due(bot, at(11))
        assert sent.plain.startswith("🧴 Time to reapply sunscreen")
        assert "UV index is about 7" in sent.plain, "the prefetch knows the place again"
        assert await send_due(bot, at(11, 30)) == [], "never twice"


@pytest.mark.parametrize(
    ("zone", "place", "utc_nine"),
    [
        ("Asia/Tokyo", (35.68, 139.69), datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
        ("America/New_York", (40.71, -74.01), datetime(2026, 11, 26, 14, 0, tzinfo=UTC)),
    ],
)
async def test_plans_and_messages_are_in_local_time(
    bot: Harness,
    uv: UvStandIn,
    zone: str,
    place: tuple[float, float],
    utc_nine: datetime,
) -> None:
    uv.places[rounded(*place)] = Sky(zone=zone)
    await keep_location(bot, *place)
    bot.clock.now = utc_nine  # 09:00 there
    (answer,) = await bot.say("/outdoors")
    assert "reapply at 11:00, 13:00 and 15:00" in answer.plain
    assert [o.due_at for o in planned(bot)] == [
        utc_nine + timedelta(hours=2),
        utc_nine + timedelta(hours=4),
        utc_nine + timedelta(hours=6),
    ]


async def test_fallback_ends_at_16_in_the_users_own_zone(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/timezone +05:30")  # a zone with no city: no forecast
    bot.clock.now = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)  # 09:00 local
    (answer,) = await bot.say("/outdoors")
    assert "reapply at 11:00, 13:00 and 15:00; then I stop at 16:00" in answer.plain
    assert [o.due_at for o in planned(bot)][-1] == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


async def test_forget_ends_outdoor_mode(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = NINE
    await bot.say("/outdoors")
    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    assert planned(bot) == []
    assert await send_due(bot, at(11)) == []


async def test_stop_ends_outdoor_mode(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    bot.clock.now = NINE
    await bot.say("/remind moisturize 21:00 daily")
    await bot.say("/outdoors")
    await bot.say("/stop")
    assert planned(bot) == []
    assert await send_due(bot, at(11)) == []


async def test_quiet_hours_are_left_out_of_the_plan(bot: Harness) -> None:
    await keep_location(bot, *LISBON)
    await bot.say("/quiet 12:30-14:30")  # a siesta
    bot.clock.now = NINE
    (answer,) = await bot.say("/outdoors")
    assert "reapply at 11:00 and 15:00" in answer.plain
    assert [o.due_at for o in planned(bot)] == [at(11), at(15)]
