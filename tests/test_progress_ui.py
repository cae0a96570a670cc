"""/progress and the weekly summary through the real bot and the Bot API stand-in."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlmodel import col, select

from miliabot_tg import progress_store, repo, texts
from miliabot_tg import progress_texts as pt
from miliabot_tg.db import alembic_config, make_engine, new_session
from miliabot_tg.dispatch import Claimed, Rendered
from miliabot_tg.models import Occurrence, Reminder, User, UserPreferences
from miliabot_tg.standin import BotMessage
from miliabot_tg.timezones import zone_from_key
from tests.harness import USER, Harness, running_bot

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
OTHER = 2002
# The harness's clock starts on Thursday 2026-11-26 at 09:00 UTC.
MONDAY = date(2026, 11, 23)
SUNDAY = date(2026, 11, 29)


@pytest.fixture
async def bot(tmp_path: Path, database_url: str) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, database_url=database_url) as harness:
        yield harness
        assert harness.failures() == []


def _at(day: date, hh: int, mm: int, zone: str) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=zone_from_key(zone)).astimezone(UTC)


async def _user_with_reminder(
    bot: Harness, user_id: int, zone: str, line: str = "sunscreen 08:30 daily"
) -> int:
    """A user who set a reminder the way people do; return the reminder's id."""
    await bot.say("/start", user_id=user_id)
    await bot.say(f"/timezone {zone}", user_id=user_id)
    await bot.say(f"/remind {line}", user_id=user_id)
    with new_session(bot.engine) as session:
        return repo.list_reminders(session=session, user_id=user_id)[-1].id or 0


def _history(bot: Harness, reminder_id: int, user_id: int, zone: str, *days: date) -> None:
    """Answered occurrences: done each day, the first one after a snooze."""
    with new_session(bot.engine) as session:
        for n, day in enumerate(days):
            at = _at(day, 8, 30, zone)
            session.add(
                Occurrence(
                    reminder_id=reminder_id,
                    user_id=user_id,
                    scheduled_for=at,
                    due_at=at,
                    status="done",
                    snoozes=1 if n == 0 else 0,
                    sent_at=at,
                    outcome_at=at,
                )
            )
        session.commit()


def _photos(bot: Harness, chat_id: int) -> list[BotMessage]:
    return [m for m in bot.standin.chat(chat_id) if m.photo is not None]


def _weekly(bot: Harness, user_id: int) -> Reminder | None:
    with new_session(bot.engine) as session:
        return progress_store.weekly_row(session=session, user_id=user_id)


# --- /progress -------------------------------------------------------------------------------


async def test_progress_sends_the_calendar_as_a_photo_with_the_summary(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    custom = await _user_with_reminder(bot, USER, BERLIN, "<b>retinol</b> & co 21:00 daily")
    _history(bot, sun, USER, BERLIN, *(MONDAY - timedelta(days=d) for d in range(-2, 10)))
    _history(bot, custom, USER, BERLIN, MONDAY)

    (shown,) = await bot.say("/progress")
    assert shown.photo is not None and shown.photo_data is not None
    assert shown.photo_data.startswith(b"\x89PNG"), "an uploaded PNG"
    assert shown.caption is not None and len(shown.caption) <= 1024
    assert "Your last 12 weeks" in shown.plain
    assert "Sunscreen: 🔥 12 days in a row, your best" in shown.plain
    assert "7 days: 6/6 done" in shown.plain and "30 days: 12/12 done" in shown.plain
    assert "after a snooze" in shown.plain, "snoozed, then done, is told apart"
    assert "<b>retinol</b> & co" in shown.plain, "the user's label, escaped, as typed"
    assert "&lt;b&gt;retinol" in shown.caption


async def test_progress_without_history_says_how_it_fills_in(bot: Harness) -> None:
    await bot.say("/start")
    (nothing,) = await bot.say("/progress")
    assert nothing.photo is None and "/remind" in nothing.plain
    await _user_with_reminder(bot, USER, BERLIN)
    (waiting,) = await bot.say("/progress")
    assert waiting.photo is None
    assert waiting.plain.startswith("📈 Your progress will fill in here.")
    assert "Done" in waiting.plain


async def test_progress_is_in_the_menu_and_in_help(bot: Harness) -> None:
    assert ("progress", "Your streaks and a 12-week calendar") in bot.standin.commands
    (shown,) = await bot.say("/help")
    assert "/progress" in shown.plain
    assert "progress" in [c.command for c in texts.COMMANDS]


async def test_forget_deletes_the_history_behind_progress(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    _history(bot, sun, USER, BERLIN, MONDAY)
    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    with new_session(bot.engine) as session:
        left = session.exec(select(Occurrence).where(col(Occurrence.user_id) == USER)).all()
        reminders = session.exec(select(Reminder).where(col(Reminder.user_id) == USER)).all()
    assert left == [] and reminders == [], "history and the weekly summary are gone"
    await bot.say("/start")
    (shown,) = await bot.say("/progress")
    assert shown.photo is None


# --- the weekly summary ----------------------------------------------------------------------


async def test_the_weekly_summary_comes_once_at_sunday_19_local_in_each_zone(
    bot: Harness,
) -> None:
    berlin = await _user_with_reminder(bot, USER, BERLIN)
    new_york = await _user_with_reminder(bot, OTHER, NEW_YORK)
    quiet_week = 3003  # has a reminder, but nothing came this week: no summary of nothing
    await _user_with_reminder(bot, quiet_week, BERLIN, "exfoliate 21:00 mondays")
    _history(bot, berlin, USER, BERLIN, MONDAY, MONDAY + timedelta(days=1))
    _history(bot, new_york, OTHER, NEW_YORK, MONDAY)
    weekly = _weekly(bot, USER)
    assert weekly is not None and weekly.next_due_at == _at(SUNDAY, 19, 0, BERLIN)

    bot.clock.now = _at(SUNDAY, 18, 59, BERLIN)
    await bot.dispatcher.run_cycle()
    assert _photos(bot, USER) == []
    bot.clock.now = _at(SUNDAY, 19, 0, BERLIN)
    await bot.dispatcher.run_cycle()
    (summary,) = _photos(bot, USER)
    assert summary.caption is not None and summary.plain.startswith("🗓 Your week")
    # The clock jumped from Thursday to Sunday: the mornings between were missed.
    assert "this week: 2/5 done, 1 after a snooze, 3 missed" in summary.plain
    assert "/settings" in summary.plain
    assert summary.buttons == [], "nothing to answer"
    assert _photos(bot, OTHER) == [], "still Sunday afternoon in New York"

    bot.clock.now = _at(SUNDAY, 19, 0, NEW_YORK)
    await bot.dispatcher.run_cycle()
    await bot.dispatcher.run_cycle()
    assert len(_photos(bot, OTHER)) == 1
    assert len(_photos(bot, USER)) == 1, "never twice"
    assert _photos(bot, quiet_week) == []
    with new_session(bot.engine) as session:
        row = progress_store.weekly_row(session=session, user_id=quiet_week)
        assert row is not None
        (skipped,) = session.exec(
            select(Occurrence).where(col(Occurrence.reminder_id) == row.id)
        ).all()
    assert skipped.status == "skipped"
    following = _weekly(bot, USER)
    assert following is not None
    assert following.next_due_at == _at(SUNDAY + timedelta(days=7), 19, 0, BERLIN)


async def test_the_weekly_summary_waits_for_the_end_of_quiet_hours(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    await bot.say("/quiet 18:00-21:30")
    _history(bot, sun, USER, BERLIN, MONDAY)
    bot.clock.now = _at(SUNDAY, 19, 0, BERLIN)
    await bot.dispatcher.run_cycle()
    assert _photos(bot, USER) == []
    bot.clock.now = _at(SUNDAY, 21, 30, BERLIN)
    await bot.dispatcher.run_cycle()
    (summary,) = _photos(bot, USER)
    # Friday to Sunday mornings were missed (the clock jumped); the week ends at 19:00.
    assert "this week: 1/4 done, 1 after a snooze, 3 missed" in summary.plain


async def test_switching_the_weekly_summary_off_in_settings_stops_it(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    _history(bot, sun, USER, BERLIN, MONDAY)
    (shown,) = await bot.say("/settings")
    assert "Weekly summary: on" in shown.plain
    off = await bot.press("📊 Turn weekly summary off")
    assert off.message_id == shown.message_id and "Weekly summary: off" in off.plain
    assert bot.standin.answered_callbacks[-1].text == pt.WEEKLY_OFF
    weekly = _weekly(bot, USER)
    assert weekly is not None and weekly.paused and weekly.next_due_at is None

    await bot.say("/remind moisturize 21:00 daily")  # a new reminder keeps it off
    bot.clock.now = _at(SUNDAY, 19, 0, BERLIN)
    await bot.dispatcher.run_cycle()
    assert _photos(bot, USER) == []

    await bot.handled(
        bot.standin.press(USER, "📊 Turn weekly summary on", message_id=shown.message_id)
    )
    (on,) = [m for m in bot.standin.chat(USER) if m.message_id == shown.message_id]
    assert "Weekly summary: on" in on.plain
    weekly = _weekly(bot, USER)
    assert weekly is not None and weekly.next_due_at == _at(
        SUNDAY + timedelta(days=7), 19, 0, BERLIN
    )
    (listed,) = await bot.say("/reminders")
    assert "Weekly summary" not in listed.plain, "it is not one of the user's reminders"


async def test_the_weekly_summary_is_not_sent_again_after_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url) as first:
        sun = await _user_with_reminder(first, USER, BERLIN)
        _history(first, sun, USER, BERLIN, MONDAY)
        first.clock.now = _at(SUNDAY, 19, 0, BERLIN)
        await first.dispatcher.run_cycle()
        assert len(_photos(first, USER)) == 1
    async with running_bot(tmp_path, database_url=database_url) as second:
        second.clock.now = _at(SUNDAY, 19, 5, BERLIN)
        await second.dispatcher.run_cycle()
        assert _photos(second, USER) == []
        assert second.failures() == []


# --- /mydata ---------------------------------------------------------------------------------


async def test_mydata_holds_the_history_behind_progress_and_forget_empties_it(
    bot: Harness,
) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    await _user_with_reminder(bot, USER, BERLIN, "<i>oil</i> 21:00 daily")
    _history(bot, sun, USER, BERLIN, MONDAY, MONDAY + timedelta(days=1))

    async def exported() -> dict[str, Any]:
        await bot.say("/mydata")
        files = [m for m in bot.standin.chat(USER) if m.document is not None]
        assert files[-1].document_data is not None
        data: dict[str, Any] = json.loads(files[-1].document_data)
        return data

    before = await exported()
    kinds = sorted(r["kind"] for r in before["reminders"])
    assert kinds == ["custom", "sunscreen", "weekly"]  # the weekly summary is data too
    assert [r["label"] for r in before["reminders"] if r["kind"] == "custom"] == ["<i>oil</i>"]
    done = [o for o in before["reminder_history"] if o["status"] == "done"]
    assert len(done) == 2

    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    after = await exported()
    assert after["reminders"] == [] and after["reminder_history"] == []


# --- the engine's side ------------------------------------------------------------------------


async def test_a_summary_that_cannot_be_drawn_is_retried_not_lost(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    _history(bot, sun, USER, BERLIN, MONDAY)
    working = bot.dispatcher.renderers[progress_store.WEEKLY]
    calls = 0

    async def broken(item: Claimed) -> Rendered | None:
        nonlocal calls
        calls += 1
        raise RuntimeError("the chart library fell over")

    bot.dispatcher.renderers = {progress_store.WEEKLY: broken}
    bot.clock.now = _at(SUNDAY, 19, 0, BERLIN)
    await bot.dispatcher.run_cycle()
    assert calls == 1 and _photos(bot, USER) == []
    weekly = _weekly(bot, USER)
    assert weekly is not None
    with new_session(bot.engine) as session:
        (waiting,) = session.exec(
            select(Occurrence).where(col(Occurrence.reminder_id) == weekly.id)
        ).all()
    assert waiting.status == "pending" and waiting.due_at > bot.clock.now

    bot.dispatcher.renderers = {progress_store.WEEKLY: working}
    bot.clock.now = waiting.due_at
    await bot.dispatcher.run_cycle()
    assert len(_photos(bot, USER)) == 1


def test_the_migration_gives_the_weekly_summary_to_people_who_had_reminders(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0006")
    now = datetime.now(UTC)
    users = [
        (1, "Europe/Berlin", True, False),  # reminders: gets it
        (2, None, True, True),  # reminders, all paused: gets it, asleep
        (3, "Asia/Tokyo", False, False),  # no reminders: nothing
    ]
    with engine.begin() as conn:
        for user_id, zone, has_reminder, paused in users:
            conn.execute(
                User.__table__.insert().values(  # type: ignore[attr-defined]
                    id=user_id, timezone=zone, status="active", first_seen=now, last_seen=now
                )
            )
            conn.execute(
                UserPreferences.__table__.insert().values(  # type: ignore[attr-defined]
                    user_id=user_id, reminders_paused=paused, updated_at=now
                )
            )
            if has_reminder:
                conn.execute(
                    Reminder.__table__.insert().values(  # type: ignore[attr-defined]
                        user_id=user_id,
                        kind="sunscreen",
                        label="sunscreen",
                        rule="08:30|daily",
                        paused=False,
                        next_due_at=now + timedelta(hours=1),
                        created_at=now,
                        updated_at=now,
                    )
                )
    command.upgrade(config, "head")
    with new_session(engine) as session:
        berlin = progress_store.weekly_row(session=session, user_id=1)
        asleep = progress_store.weekly_row(session=session, user_id=2)
        none = progress_store.weekly_row(session=session, user_id=3)
    assert berlin is not None and not berlin.paused and berlin.next_due_at is not None
    local = berlin.next_due_at.astimezone(zone_from_key(BERLIN))
    assert (local.weekday(), local.hour, local.minute) == (6, 19, 0)
    assert now < berlin.next_due_at <= now + timedelta(days=7)
    assert asleep is not None and asleep.next_due_at is None
    assert none is None
    command.downgrade(config, "0006")
    with new_session(engine) as session:
        assert progress_store.weekly_row(session=session, user_id=1) is None
    engine.dispose()


async def test_stop_holds_the_weekly_summary_and_resuming_brings_it_back(bot: Harness) -> None:
    sun = await _user_with_reminder(bot, USER, BERLIN)
    _history(bot, sun, USER, BERLIN, MONDAY)
    await bot.say("/stop")
    weekly = _weekly(bot, USER)
    assert weekly is not None and weekly.next_due_at is None
    bot.clock.now = _at(SUNDAY, 19, 0, BERLIN)
    await bot.dispatcher.run_cycle()
    assert _photos(bot, USER) == []
    await bot.press("▶️ Resume now")
    weekly = _weekly(bot, USER)
    assert weekly is not None
    assert weekly.next_due_at == _at(SUNDAY + timedelta(days=7), 19, 0, BERLIN)
