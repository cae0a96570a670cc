"""UV forecasts: consent to keep a location, the morning sunscreen line, the cache, and a
failing service, through the real bot against the Bot API and Open-Meteo stand-ins."""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from miliabot_tg import outdoors
from miliabot_tg.db import new_session
from miliabot_tg.models import UvLocation
from miliabot_tg.standin import BotMessage
from miliabot_tg.standin.uv import Sky, UvStandIn
from miliabot_tg.uv import (
    CREDIT,
    FIRST_BACKOFF,
    UvClient,
    UvDataError,
    parse_forecast,
    rounded,
    uv_line,
)
from tests.harness import USER, Harness, running_bot

LISBON = (38.7223, -9.1393)
UV_LINE = "UV up to 7 today, strongest 09:00–17:00"


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


def kept(bot: Harness, user_id: int = USER) -> tuple[float, float] | None:
    with new_session(bot.engine) as session:
        row = session.get(UvLocation, user_id)
        return None if row is None else (row.latitude, row.longitude)


async def share_location(bot: Harness, lat: float, lon: float) -> list[BotMessage]:
    before = len(bot.standin.chat(USER))
    await bot.handled(bot.standin.send_location(lat, lon))
    return bot.standin.chat(USER)[before:]


async def keep_lisbon(bot: Harness) -> None:
    await bot.say("/start")
    await share_location(bot, *LISBON)
    await bot.press("✅ Yes, keep it")


async def sunscreen_at_10(bot: Harness) -> BotMessage:
    """A 10:00 daily sunscreen reminder, prefetched at 09:45 and sent at 10:00."""
    await bot.say("/remind sunscreen 10:00 daily")
    bot.clock.now = datetime(2026, 11, 26, 9, 45, tzinfo=UTC)
    assert bot.uv is not None
    await bot.uv.prefetch()
    bot.clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    before = len(bot.standin.chat(USER))
    assert await bot.dispatcher.run_cycle() == 1
    (sent,) = bot.standin.chat(USER)[before:]
    return sent


# --- pure parts --------------------------------------------------------------------------------


def test_locations_are_rounded_to_a_tenth_of_a_degree() -> None:
    assert rounded(38.7223, -9.1393) == (38.7, -9.1)
    assert rounded(-33.8688, 151.2093) == (-33.9, 151.2)
    assert rounded(0.04, -0.04) == (0.0, 0.0)
    assert str(rounded(0.04, -0.04)[1]) == "0.0", "no negative zero in keys or buttons"
    with pytest.raises(ValueError, match="not a location"):
        rounded(91.0, 0.0)


def test_a_realistic_forecast_reads_as_peak_and_window() -> None:
    server = UvStandIn(clock=lambda: datetime(2026, 6, 21, 9, 0, tzinfo=UTC))
    server.default = Sky(zone="Europe/Lisbon", peak=8.4, sunrise=6.0, sunset=21.0)
    forecast = parse_forecast(server.body((38.7, -9.1), 2))
    assert forecast.offset == timedelta(hours=1), "Lisbon in summer"
    day = forecast.day(date(2026, 6, 21))
    assert day is not None
    assert day.sunset == datetime(2026, 6, 21, 20, 0, tzinfo=UTC)
    assert uv_line(day).startswith("UV up to 8 today, strongest ")


def test_a_low_day_names_its_peak_hour() -> None:
    server = UvStandIn(clock=lambda: datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    server.default = Sky(zone="Europe/Oslo", peak=1.2, sunrise=9.0, sunset=15.5)
    day = parse_forecast(server.body((59.9, 10.8), 1)).day(date(2026, 11, 26))
    assert day is not None
    assert uv_line(day) == "UV up to 1 today, strongest 12:00–13:00"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"utc_offset_seconds": 0, "hourly": {"time": ["2026-11-26T00:00"], "uv_index": []}},
        {"utc_offset_seconds": 0, "hourly": {"time": ["yesterday"], "uv_index": [1.0]}},
        {"utc_offset_seconds": 0, "hourly": {"time": ["2026-11-26T00:00"], "uv_index": [-4]}},
        {"utc_offset_seconds": 0, "hourly": {"time": [], "uv_index": []}},
        [1, 2, 3],
    ],
)
def test_malformed_forecasts_are_refused(body: object) -> None:
    with pytest.raises(UvDataError):
        parse_forecast(body)


# --- consent -----------------------------------------------------------------------------------


async def test_a_shared_location_is_kept_only_after_yes_and_rounded(bot: Harness) -> None:
    await bot.say("/start")
    zone_answer, question = await share_location(bot, *LISBON)
    assert zone_answer.plain.startswith("🌍 Your timezone is now")
    assert "May I keep this location for UV forecasts?" in question.plain
    assert "(38.7, -9.1)" in question.plain
    assert labels(question) == ["✅ Yes, keep it", "No, thanks"]
    assert all(len(data.encode()) <= 64 for data in question.callback_data())
    assert kept(bot) is None, "nothing stored before the answer"

    answer = await bot.press("✅ Yes, keep it")
    assert answer.message_id == question.message_id and answer.plain.startswith("📍 Kept")
    assert kept(bot) == (38.7, -9.1)
    with new_session(bot.engine) as session:
        assert outdoors.data_lines(session=session, user_id=USER) == [
            "Location for UV forecasts: 38.7, -9.1 (about 10 km)"
        ]
    assert bot.failures() == []

    # The same place again is not asked about twice.
    _zone_again, *asked = await share_location(bot, 38.71, -9.12)
    assert asked == []


async def test_no_keeps_nothing(bot: Harness) -> None:
    await bot.say("/start")
    await share_location(bot, *LISBON)
    answer = await bot.press("No, thanks")
    assert "I haven't kept it" in answer.plain
    assert kept(bot) is None


async def test_a_forged_keep_button_stores_nothing(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/settings")
    for data in ("uv:keep:999:0", "uv:keep:nan:1", "uv:keep:1", "uv:maybe"):
        await bot.handled(bot.standin.forge_press(USER, data))
    assert kept(bot) is None
    assert all(a.text for a in bot.standin.answered_callbacks), "each is answered"


async def test_settings_show_the_location_and_delete_it(bot: Harness) -> None:
    await keep_lisbon(bot)
    (shown,) = await bot.say("/settings")
    assert "Location for UV forecasts: 38.7, -9.1 (about 10 km)" in shown.plain
    redrawn = await bot.press("📍 Delete my UV location")
    assert redrawn.message_id == shown.message_id
    assert "Location for UV forecasts" not in redrawn.plain
    assert "📍 Delete my UV location" not in labels(redrawn)
    assert kept(bot) is None


async def test_forget_deletes_the_location(bot: Harness) -> None:
    await keep_lisbon(bot)
    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    assert kept(bot) is None
    with new_session(bot.engine) as session:
        assert session.exec(select(UvLocation)).all() == []  # type: ignore[call-overload]


async def test_privacy_mentions_the_kept_location(bot: Harness) -> None:
    (shown,) = await bot.say("/privacy")
    assert "UV forecasts" in shown.plain and "10 km" in shown.plain


# --- the morning sunscreen line ----------------------------------------------------------------


async def test_a_morning_sunscreen_reminder_says_todays_uv(bot: Harness, uv: UvStandIn) -> None:
    await keep_lisbon(bot)
    sent = await sunscreen_at_10(bot)
    lines = sent.plain.split("\n")
    assert lines[0] == "☀️ Time for sunscreen!"
    assert lines[1] == f"🌞 {UV_LINE} (where you are)."
    assert "Weather data by Open-Meteo.com" in sent.plain
    assert 'href="https://open-meteo.com/"' in (sent.text or "")
    assert "🌳 I'm outside today" in labels(sent)
    assert len(uv.requests) == 1
    (query,) = uv.requests
    assert query["latitude"] == "38.7" and query["longitude"] == "-9.1"
    assert query["hourly"] == "uv_index" and query["timezone"] == "auto"
    assert query["daily"] == "uv_index_max,sunset"
    assert bot.failures() == []


async def test_a_city_from_timezone_stands_in_for_a_location(bot: Harness, uv: UvStandIn) -> None:
    await bot.say("/start")
    await bot.say("/timezone Lisbon")
    sent = await sunscreen_at_10(bot)
    assert f"🌞 {UV_LINE} (for Lisbon)." in sent.plain
    (query,) = uv.requests
    assert (query["latitude"], query["longitude"]) == ("38.7", "-9.1")


async def test_without_a_place_the_reminder_is_unchanged(bot: Harness, uv: UvStandIn) -> None:
    await bot.say("/start")
    sent = await sunscreen_at_10(bot)
    assert "UV" not in sent.plain and CREDIT not in (sent.text or "")
    assert labels(sent) == ["✅ Done", "😴 15 min", "😴 1 hour", "⏭ Skip"]
    assert uv.requests == [], "nobody to ask about"


async def test_an_evening_sunscreen_reminder_has_no_uv_line(bot: Harness, uv: UvStandIn) -> None:
    await keep_lisbon(bot)
    await bot.say("/remind sunscreen 13:00 daily")
    bot.clock.now = datetime(2026, 11, 26, 12, 45, tzinfo=UTC)
    assert bot.uv is not None
    await bot.uv.prefetch()
    bot.clock.now = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    await bot.dispatcher.run_cycle()
    sent = bot.standin.last(USER)
    assert sent is not None and "UV" not in sent.plain


@pytest.mark.parametrize("fault", ["error", "bad_request", "malformed", "wrong_shape"])
async def test_a_failing_service_leaves_the_reminder_on_time_and_unchanged(
    bot: Harness, uv: UvStandIn, fault: str
) -> None:
    await keep_lisbon(bot)
    uv.fault = fault  # type: ignore[assignment]
    sent = await sunscreen_at_10(bot)
    assert sent.plain.split("\n")[0] == "☀️ Time for sunscreen!"
    assert "UV" not in sent.plain
    assert labels(sent) == ["✅ Done", "😴 15 min", "😴 1 hour", "⏭ Skip"]
    assert len(uv.requests) == 1


async def test_a_hanging_service_never_holds_a_reminder(tmp_path: Path, uv: UvStandIn) -> None:
    async with running_bot(tmp_path, uv_api_url=uv.url, uv_timeout=0.5) as bot:
        uv.clock = bot.clock
        await keep_lisbon(bot)
        await bot.say("/remind sunscreen 10:00 daily")
        uv.fault, uv.hang_seconds = "timeout", 5.0
        bot.clock.now = datetime(2026, 11, 26, 9, 45, tzinfo=UTC)
        assert bot.uv is not None
        prefetch = asyncio.create_task(bot.uv.prefetch())
        await asyncio.sleep(0.1)
        assert not prefetch.done(), "the service hangs"
        bot.clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
        assert await bot.dispatcher.run_cycle() == 1, "sent while the fetch still hangs"
        sent = bot.standin.last(USER)
        assert sent is not None and "UV" not in sent.plain
        await prefetch  # the client's own timeout ends it
        assert bot.uv.client.cached(*LISBON) is None


async def test_a_reply_waits_on_a_hanging_service_only_briefly(uv: UvStandIn) -> None:
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    uv.clock = lambda: now
    uv.fault, uv.hang_seconds = "timeout", 3.0
    client = UvClient(uv.url, clock=lambda: now, timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await client.forecast(*LISBON, deadline=0.2) is None
    assert loop.time() - started < 0.9, "the deadline, not the fetch, decides"
    # The fetch goes on in the background until the client's own timeout; join it.
    assert await client.forecast(*LISBON) is None
    assert await client.forecast(*LISBON, deadline=0.2) is None, "backing off"
    assert len(uv.requests) == 1, "the second asker shared the first request"
    await client.close()


async def test_forecasts_are_cached_per_rounded_place_per_hour(uv: UvStandIn) -> None:
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    uv.clock = lambda: now[0]
    client = UvClient(uv.url, clock=lambda: now[0])
    first = await client.forecast(38.72, -9.14)
    assert first is not None
    assert await client.forecast(38.68, -9.09) is first, "same 0.1° square"
    now[0] += timedelta(minutes=59)
    assert await client.forecast(38.7, -9.1) is first
    assert len(uv.requests) == 1
    await client.forecast(40.4, -3.7)
    assert len(uv.requests) == 2, "another place is another request"
    now[0] += timedelta(minutes=2)
    assert await client.forecast(38.7, -9.1) is not first, "an hour later it is fetched again"
    assert len(uv.requests) == 3
    await client.close()


async def test_a_failing_service_is_backed_off_not_hammered(uv: UvStandIn) -> None:
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    uv.clock = lambda: now[0]
    uv.fault = "error"
    client = UvClient(uv.url, clock=lambda: now[0])
    for _ in range(20):
        assert await client.forecast(*LISBON) is None
    assert len(uv.requests) == 1, "one failure, then quiet"
    now[0] += FIRST_BACKOFF + timedelta(seconds=1)
    assert await client.forecast(*LISBON) is None
    assert len(uv.requests) == 2
    now[0] += FIRST_BACKOFF + timedelta(seconds=1)
    assert await client.forecast(*LISBON) is None
    assert len(uv.requests) == 2, "the wait doubles after each failure"
    now[0] += FIRST_BACKOFF
    uv.fault = None
    assert await client.forecast(*LISBON) is not None
    assert len(uv.requests) == 3
    await client.close()


async def test_concurrent_askers_share_one_request(uv: UvStandIn) -> None:
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    uv.clock = lambda: now
    client = UvClient(uv.url, clock=lambda: now)
    results = await asyncio.gather(*(client.forecast(*LISBON) for _ in range(10)))
    assert all(r is results[0] and r is not None for r in results)
    assert len(uv.requests) == 1
    await client.close()


async def test_prefetch_asks_once_per_place_and_hour(bot: Harness, uv: UvStandIn) -> None:
    await keep_lisbon(bot)
    await bot.say("/remind sunscreen 10:00 daily")
    other = USER + 1
    await bot.say("/start", user_id=other)
    await bot.handled(bot.standin.send_location(38.74, -9.12, user_id=other))
    await bot.press("✅ Yes, keep it", chat_id=other)
    await bot.say("/remind sunscreen 10:00 daily", user_id=other)
    bot.clock.now = datetime(2026, 11, 26, 9, 40, tzinfo=UTC)
    assert bot.uv is not None
    assert await bot.uv.prefetch() == 1
    bot.clock.now = datetime(2026, 11, 26, 9, 50, tzinfo=UTC)
    await bot.uv.prefetch()
    assert len(uv.requests) == 1
    bot.clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert await bot.dispatcher.run_cycle() == 2
    for user_id in (USER, other):
        sent = bot.standin.last(user_id)
        assert sent is not None and UV_LINE in sent.plain


def test_zone_cities_have_coordinates() -> None:
    lisbon = outdoors.zone_place("Europe/Lisbon")
    assert lisbon is not None and (lisbon.latitude, lisbon.longitude) == (38.7, -9.1)
    assert lisbon.city == "Lisbon"
    new_york = outdoors.zone_place("America/New_York")
    assert new_york is not None and new_york.city == "New York"
    assert outdoors.zone_place("UTC") is None
    assert outdoors.zone_place("+05:30") is None
    assert outdoors.zone_place(None) is None


def test_uv_line_format() -> None:
    assert re.fullmatch(r"UV up to \d+ today, strongest \d\d:\d\d–\d\d:\d\d", UV_LINE)


@pytest.mark.parametrize("how", ["settings", "forget"])
async def test_a_deleted_location_is_not_used_from_memory(
    bot: Harness, uv: UvStandIn, how: str
) -> None:
    await keep_lisbon(bot)
    await bot.say("/remind sunscreen 10:00 daily")
    bot.clock.now = datetime(2026, 11, 26, 9, 45, tzinfo=UTC)
    assert bot.uv is not None
    await bot.uv.prefetch()  # the place and its forecast are in memory now
    if how == "settings":
        await bot.say("/settings")
        await bot.press("📍 Delete my UV location")
    else:
        await bot.say("/forget")
        await bot.press("Yes, delete my data")
        await bot.say("/start")
        await bot.say("/remind sunscreen 10:00 daily")
    bot.clock.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert await bot.dispatcher.run_cycle() == 1
    sent = bot.standin.last(USER)
    assert sent is not None and sent.plain.startswith("☀️ Time for sunscreen!")
    assert "UV" not in sent.plain
