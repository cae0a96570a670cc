"""/settings, and what /privacy and /forget say and do about announcements."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg import broadcasts as store
from miliabot_tg import repo, texts
from miliabot_tg.broadcasts import DELIVERIES, PREFERENCES, REMINDERS, Audience
from miliabot_tg.db import new_session
from miliabot_tg.models import Occurrence
from miliabot_tg.schedule import parse_remind
from miliabot_tg.stats import OCCURRENCES
from tests.harness import USER, Harness, running_bot


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path) as harness:
        yield harness


def labels(message: object) -> list[str]:
    return [label for row in message.buttons for label, _ in row]  # type: ignore[attr-defined]


def announcements_on(bot: Harness, user_id: int = USER) -> bool:
    with bot.engine.connect() as conn:
        return store.count_audience(conn, Audience(), bot.clock()) == 1


async def test_settings_show_the_choices_and_switch_announcements_in_place(bot: Harness) -> None:
    await bot.say("/start")
    (shown,) = await bot.say("/settings")
    assert shown.plain.startswith("⚙️ Your settings")
    assert "Announcements: on" in shown.plain
    assert "Timezone: UTC, assumed" in shown.plain and "it's 09:00 there" in shown.plain
    assert "Quiet hours: none" in shown.plain
    assert "Reminders: none yet" in shown.plain
    assert labels(shown) == [
        "🔕 Turn announcements off",
        "🌍 Timezone",
        "🌙 Quiet hours",
        "⏰ My reminders",
        "📊 Turn weekly summary off",
    ]
    assert all(len(data.encode()) <= 64 for data in shown.callback_data())

    off = await bot.press("🔕 Turn announcements off")
    assert off.message_id == shown.message_id and off.edits == 1, "edited in place"
    assert "Announcements: off" in off.plain
    assert labels(off)[0] == "🔔 Turn announcements on"
    assert bot.standin.answered_callbacks[-1].text == "🔕 No more announcements."
    assert not announcements_on(bot)

    on = await bot.press("🔔 Turn announcements on")
    assert on.message_id == shown.message_id and "Announcements: on" in on.plain
    assert announcements_on(bot)
    assert bot.failures() == []


async def test_an_old_settings_message_sets_what_it_says_and_shows_the_truth(
    bot: Harness,
) -> None:
    await bot.say("/start")
    (old,) = await bot.say("/settings")
    await bot.say("/settings")
    await bot.press("🔕 Turn announcements off")  # on the newer message
    await bot.handled(
        bot.standin.press(USER, "🔕 Turn announcements off", message_id=old.message_id)
    )
    (again,) = [m for m in bot.standin.chat(USER) if m.message_id == old.message_id]
    assert "Announcements: off" in again.plain
    assert not announcements_on(bot)
    assert bot.failures() == []


async def test_the_timezone_button_starts_the_timezone_flow(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/settings")
    before = len(bot.standin.chat(USER))
    await bot.press("🌍 Timezone")
    (prompt,) = bot.standin.chat(USER)[before:]
    assert "I'm assuming UTC for now" in prompt.plain
    assert labels(prompt) == ["📍 Share my location"]
    (done,) = await bot.say("Lisbon")
    assert done.plain.startswith("🌍 Your timezone is now Lisbon")
    (shown,) = await bot.say("/settings")
    assert "Timezone: Europe/Lisbon, it's" in shown.plain


async def test_the_quiet_hours_button_shows_them_and_how_to_change_them(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/quiet 22:00-07:00")
    (shown,) = await bot.say("/settings")
    assert "Quiet hours: from 22:00 to 07:00" in shown.plain
    before = len(bot.standin.chat(USER))
    await bot.press("🌙 Quiet hours")
    (status,) = bot.standin.chat(USER)[before:]
    assert status.plain.startswith("🌙 Your quiet hours: from 22:00 to 07:00 (UTC time).")
    assert "/quiet off" in status.plain


async def test_the_reminders_button_opens_the_list(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/remind sunscreen 08:30 daily")
    (shown,) = await bot.say("/settings")
    assert "Reminders: 1" in shown.plain
    listed = await bot.press("⏰ My reminders")
    assert listed.message_id == shown.message_id and not listed.plain.startswith("⚙️")
    assert "Sunscreen" in listed.plain
    assert bot.failures() == []


async def test_forged_settings_buttons_change_nothing(bot: Harness) -> None:
    await bot.say("/start")
    forged = [
        [InlineKeyboardButton("A", callback_data="set:ann:maybe")],
        [InlineKeyboardButton("B", callback_data="set:")],
        [InlineKeyboardButton("C", callback_data="set:ann:off:" + "x" * 40)],
    ]
    await bot.app.bot.send_message(USER, "forged", reply_markup=InlineKeyboardMarkup(forged))
    for label in ("A", "B", "C"):
        pressed = await bot.press(label)
        assert bot.standin.answered_callbacks[-1].text == texts.STALE_BUTTON
        assert pressed.plain == "forged" and pressed.edits == 0
    assert announcements_on(bot)
    with bot.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PREFERENCES)).scalar_one() == 0


async def test_settings_is_in_help_and_privacy_covers_announcements(bot: Harness) -> None:
    (help_reply,) = await bot.say("/help")
    assert "/settings: announcements on or off, timezone and quiet hours" in help_reply.plain
    assert "settings" in [name for name, _ in bot.standin.commands]
    (privacy,) = await bot.say("/privacy")
    assert "whether you want announcements" in privacy.plain
    assert "for each announcement I send you, when it went out" in privacy.plain


async def test_forget_deletes_announcements_and_deliveries_too(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url) as bot:
        await bot.say("/start")
        await bot.say("/start", user_id=2002)  # someone else, kept
        await bot.say("/quiet 22:00-07:00", user_id=2002)
        for user_id in (USER, 2002):
            with new_session(bot.engine) as session:
                reminder = repo.add_reminder(
                    session=session,
                    user_id=user_id,
                    spec=parse_remind("sunscreen 08:30 daily", today=bot.clock().date()),
                    now=bot.clock(),
                    default_key="UTC",
                )
                session.add(
                    Occurrence(
                        reminder_id=reminder.id or 0,
                        user_id=user_id,
                        scheduled_for=bot.clock(),
                        due_at=bot.clock(),
                        status="done",
                    )
                )
                session.commit()
        with bot.engine.begin() as conn:
            broadcast_id = store.create_draft(conn, created_by=0, now=bot.clock(), text="News")
        store.start(bot.engine, broadcast_id, bot.clock(), "UTC")
        await bot.broadcaster.run_round()
        await bot.say("/settings")
        await bot.press("🔕 Turn announcements off")

        await bot.say("/forget")
        await bot.press("Yes, delete my data")

        def rows(table: object, user_column: str) -> dict[int, int]:
            column = table.c[user_column]  # type: ignore[attr-defined]
            with bot.engine.connect() as conn:
                found = conn.execute(select(column, func.count()).group_by(column)).all()
            return {int(user): int(count) for user, count in found}

        for table, column in (
            (DELIVERIES, "user_id"),
            (PREFERENCES, "user_id"),
            (REMINDERS, "user_id"),
            (OCCURRENCES, "user_id"),
        ):
            assert USER not in rows(table, column), table
            assert 2002 in rows(table, column), table
        with new_session(bot.engine) as session:
            user = repo.get_user(session=session, user_id=USER)
        assert user is not None
        assert (user.status, user.first_name, user.language_code, user.timezone) == (
            "deleted",
            "",
            None,
            None,
        )
        with bot.engine.connect() as conn:
            assert store.count_audience(conn, Audience(), bot.clock()) == 1, "only the other"
