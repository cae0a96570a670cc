"""Reminders as people use them: /remind, /reminders, /timezone, /quiet, /stop and the
buttons on a reminder message, through the real bot against the Bot API stand-in."""

import dataclasses
import zoneinfo
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg import repo
from miliabot_tg.db import new_session
from miliabot_tg.models import Occurrence, Reminder, User, UserPreferences
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.handlers import ReminderHandlers
from miliabot_tg.schedule import EveryNDays, Rule, next_occurrence, parse_remind
from miliabot_tg.standin import BotMessage
from tests.harness import GUIDE, USER, Harness, running_bot

OTHER_USER = 2002
# The harness's frozen clock: Thursday 26 November 2026, 09:00 UTC.
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path) as harness:
        yield harness
        assert harness.failures() == [], "the bot sent something Telegram would refuse"


# --- helpers ---------------------------------------------------------------------------------


def stored(bot: Harness, user_id: int = USER) -> list[Reminder]:
    with new_session(bot.engine) as session:
        return repo.list_reminders(session=session, user_id=user_id)


def user_row(bot: Harness, user_id: int = USER) -> User:
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=user_id)
    assert user is not None
    return user


def preferences(bot: Harness, user_id: int = USER) -> UserPreferences | None:
    with new_session(bot.engine) as session:
        return repo.get_preferences(session=session, user_id=user_id)


def occurrence(bot: Harness, occurrence_id: int) -> Occurrence:
    with new_session(bot.engine) as session:
        found = session.get(Occurrence, occurrence_id)
    assert found is not None
    return found


def message(bot: Harness, message_id: int) -> BotMessage:
    (found,) = [m for m in bot.standin.chat(USER) if m.message_id == message_id]
    return found


def labels(message: BotMessage) -> list[str]:
    return [label for row in message.buttons for label, _ in row]


def handlers(bot: Harness) -> ReminderHandlers:
    """The running bot's ReminderHandlers (to watch its wake-ups or forget its memory)."""
    for group in bot.app.handlers.values():
        for handler in group:
            owner = getattr(handler.callback, "__self__", None)
            if isinstance(owner, ReminderHandlers):
                return owner
    raise AssertionError("ReminderHandlers is not registered")


def watch_wakes(bot: Harness) -> list[datetime]:
    woken: list[datetime] = []
    owner = handlers(bot)
    owner.deps = dataclasses.replace(owner.deps, wake=woken.append)
    return woken


def add_occurrence(
    bot: Harness, reminder_id: int, *, user_id: int = USER, status: str = "sent"
) -> int:
    """An occurrence as the dispatcher leaves it once Telegram accepted the message."""
    now = bot.clock.now
    with new_session(bot.engine) as session:
        row = Occurrence(
            reminder_id=reminder_id,
            user_id=user_id,
            scheduled_for=now,
            due_at=now,
            status=status,
            attempts=1,
            sent_at=now,
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


async def send_reminder(bot: Harness, reminder: Reminder, occurrence_id: int) -> BotMessage:
    """Send the reminder message the way the dispatcher will, and return it."""
    text, keyboard = rt.reminder_message(
        occurrence_id=occurrence_id,
        kind=reminder.kind,
        label=reminder.label,
        tip=rt.tip_for(GUIDE, reminder.kind, occurrence_id),
        scheduled_local=bot.clock.now,
        late=False,
        follow_up=False,
    )
    await bot.app.bot.send_message(USER, text, reply_markup=keyboard)
    last = bot.standin.last(USER)
    assert last is not None
    return last


async def remind(bot: Harness, line: str, *, keep_timezone: bool = True) -> Reminder:
    """Add a reminder with a one-liner; answer the timezone question with Keep."""
    await bot.say(f"/remind {line}")
    if keep_timezone and user_row(bot).timezone is None:
        await bot.press("Keep UTC")
    return stored(bot)[-1]


# --- /remind in one line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind", "label", "rule", "confirmation", "next_local"),
    [
        (
            "sunscreen 08:30 daily",
            "sunscreen",
            "sunscreen",
            "08:30|daily",
            "✅ Reminder set: ☀️ Sunscreen, every day at 08:30 (UTC time).",
            "Next: tomorrow at 08:30.",
        ),
        (
            "moisturize 08:00,21:30 weekdays",
            "moisturize",
            "moisturize",
            "08:00,21:30|weekdays",
            "✅ Reminder set: 💧 Moisturize, weekdays at 08:00 and 21:30 (UTC time).",
            "Next: today at 21:30.",
        ),
        (
            "exfoliate 21:00 mon,thu",
            "exfoliate",
            "exfoliate",
            "21:00|mon,thu",
            "✅ Reminder set: ✨ Exfoliate, Mon and Thu at 21:00 (UTC time).",
            "Next: today at 21:00.",
        ),
        (
            "exfoliate 21:00 every 3 days",
            "exfoliate",
            "exfoliate",
            "21:00|every3:2026-11-26",
            "✅ Reminder set: ✨ Exfoliate, every 3 days at 21:00 (UTC time).",
            "Next: today at 21:00.",
        ),
        (
            "water 12:00 daily",
            "custom",
            "water",
            "12:00|daily",
            "✅ Reminder set: 🔔 water, every day at 12:00 (UTC time).",
            "Next: today at 12:00.",
        ),
    ],
)
async def test_each_one_line_example_is_stored_and_confirmed_with_its_next_time(
    bot: Harness,
    line: str,
    kind: str,
    label: str,
    rule: str,
    confirmation: str,
    next_local: str,
) -> None:
    woken = watch_wakes(bot)
    replies = await bot.say(f"/remind {line}")
    confirmed = replies[0]
    assert confirmed.plain.splitlines()[:2] == [confirmation, next_local]
    assert "/reminders" in confirmed.plain
    (reminder,) = stored(bot)
    assert (reminder.kind, reminder.label, reminder.rule, reminder.paused) == (
        kind,
        label,
        rule,
        False,
    )
    expected = next_occurrence(Rule.from_text(rule), UTC, NOW)
    assert reminder.next_due_at == expected
    assert woken == [expected], "the dispatcher is told about the new reminder at once"


async def test_the_next_time_further_away_names_the_weekday_and_date(bot: Harness) -> None:
    await bot.say("/timezone Europe/Berlin")
    bot.clock.advance(timedelta(days=1))  # Friday 27 November
    (confirmed, *_) = await bot.say("/remind exfoliate 21:00 mon,thu")
    assert "(Europe/Berlin time)" in confirmed.plain
    assert "Next: Mon 30 Nov at 21:00." in confirmed.plain
    (reminder,) = stored(bot)
    assert reminder.next_due_at == datetime(2026, 11, 30, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("sunscreen 25:00 daily", "I couldn't read “25:00” as a time."),
        ("exfoliate 21:00 every 0 days", "I can repeat every 2 to 30 days, not every 0."),
        ("sunscreen daily", "I couldn't find a time in that; add one like 08:30 or 9pm."),
        ("a" * 65 + " 08:00", "That name is too long; please keep it to 64 characters."),
        ("sunscreen 08:30 funday", "I couldn't read “funday” as a day."),
        ("<b>tea</b> 08:30 <b>x", "I couldn't read “<b>x” as a day."),
    ],
)
async def test_a_line_that_cannot_be_read_gets_usage_and_stores_nothing(
    bot: Harness, line: str, problem: str
) -> None:
    (reply,) = await bot.say(f"/remind {line}")
    assert reply.plain.startswith(f"😕 {problem} Nothing was saved.")
    for example in rt.EXAMPLES:
        assert example in reply.plain
    assert "every N days" in reply.plain
    assert stored(bot) == []


async def test_the_same_reminder_twice_is_kept_once(bot: Harness) -> None:
    await remind(bot, "sunscreen 08:30 daily")
    (reply,) = await bot.say("/remind spf 08:30 daily")
    assert reply.plain.startswith("You already have that one: ☀️ Sunscreen, every day at 08:30.")
    assert len(stored(bot)) == 1


async def test_exfoliating_more_than_three_times_a_week_gets_a_gentle_caution(
    bot: Harness,
) -> None:
    await bot.say("/timezone Lisbon")
    confirmed, caution = await bot.say("/remind exfoliate 21:00 every 2 days")
    assert confirmed.plain.startswith("✅ Reminder set: ✨ Exfoliate, every other day at 21:00")
    assert "about 3.5 exfoliations a week" in caution.plain
    assert "1 to 3 times a week" in caution.plain
    assert caution.buttons == [[("📖 Gentle exfoliation", "guide:open:gentle-exfoliation")]]
    opened = await bot.press("📖 Gentle exfoliation")
    assert opened.plain.startswith("Gentle exfoliation\n\n")
    assert len(stored(bot)) == 1, "the caution advises; the reminder is still stored"

    (calm,) = await bot.say("/remind exfoliate 20:00 mon,thu")
    assert calm.plain.startswith("✅ Reminder set")


async def test_the_first_reminder_asks_about_the_assumed_timezone(bot: Harness) -> None:
    confirmed, question = await bot.say("/remind sunscreen 08:30 daily")
    assert confirmed.plain.startswith("✅ Reminder set")
    assert question.plain.startswith(
        "🌍 I assumed your timezone is UTC (it's 09:00 there now). Is that right?"
    )
    assert "/timezone City" in question.plain
    assert question.buttons == [[("Keep UTC", "tz:keep:UTC"), ("📍 Share my location", "tz:loc")]]
    assert user_row(bot).timezone is None

    kept = await bot.press("Keep UTC")
    assert kept.message_id == question.message_id
    assert kept.plain.startswith("🌍 Your timezone is now UTC. It's 09:00 there.")
    assert "I moved your reminder to match." in kept.plain
    assert user_row(bot).timezone == "UTC"
    (again,) = await bot.say("/remind moisturize 21:30 daily")
    assert again.plain.startswith("✅ Reminder set"), "no second question once it is set"


async def test_an_old_keep_button_does_not_undo_a_later_choice(bot: Harness) -> None:
    _, question = await bot.say("/remind sunscreen 08:30 daily")
    await bot.say("/timezone Lisbon")
    await bot.press("Keep UTC")
    answer = message(bot, question.message_id)
    assert answer.plain == "🌍 Your timezone is already set to Europe/Lisbon. /timezone changes it."
    assert user_row(bot).timezone == "Europe/Lisbon"


async def test_sharing_a_location_sets_the_zone_and_moves_the_reminders(bot: Harness) -> None:
    await bot.say("/remind sunscreen 08:30 daily")
    await bot.press("📍 Share my location")
    asking = bot.standin.last(USER)
    assert asking is not None
    assert asking.plain.startswith("🌍 I'm assuming UTC for now")
    assert asking.reply_markup is not None
    (button,) = asking.reply_markup["keyboard"][0]
    assert button == {"text": "📍 Share my location", "request_location": True}

    woken = watch_wakes(bot)
    await bot.handled(bot.standin.send_location(52.52, 13.40))
    # The zone's answer, then the question whether to keep the location for UV forecasts.
    answer, keep = bot.standin.chat(USER)[-2:]
    assert keep.plain.startswith("☀️ May I keep this location for UV forecasts?")
    assert answer.plain.startswith("🌍 Your timezone is now Europe/Berlin. It's 10:00 there.")
    assert "I moved your reminder to match." in answer.plain
    assert answer.reply_markup == {"remove_keyboard": True}
    assert user_row(bot).timezone == "Europe/Berlin"
    (reminder,) = stored(bot)
    assert reminder.next_due_at == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)  # 08:30 in Berlin
    assert woken == [reminder.next_due_at]


@pytest.mark.parametrize(
    ("argument", "key", "first_line", "note"),
    [
        (
            "Europe/Berlin",
            "Europe/Berlin",
            "🌍 Your timezone is now Europe/Berlin. It's 10:00 there.",
            None,
        ),
        (
            "Lisbon",
            "Europe/Lisbon",
            "🌍 Your timezone is now Lisbon (Europe/Lisbon). It's 09:00 there.",
            None,
        ),
        (
            "Mumbai",
            "Asia/Kolkata",
            "🌍 Your timezone is now Mumbai (Asia/Kolkata). It's 14:30 there.",
            None,
        ),
        (
            "+05:30",
            "+05:30",
            "🌍 Your timezone is now UTC+05:30. It's 14:30 there.",
            "won't follow daylight saving changes",
        ),
        ("EST", "America/New_York", "🌍 Your timezone is now America/New_York.", "I read “EST”"),
    ],
)
async def test_timezone_by_name_city_or_offset(
    bot: Harness, argument: str, key: str, first_line: str, note: str | None
) -> None:
    (reply,) = await bot.say(f"/timezone {argument}")
    assert reply.plain.startswith(first_line)
    if note is not None:
        assert note in reply.plain
    assert "moved" not in reply.plain, "no reminders, nothing to move"
    assert user_row(bot).timezone == key


async def test_an_unknown_timezone_offers_suggestions_and_changes_nothing(bot: Harness) -> None:
    (reply,) = await bot.say("/timezone Lisbn")
    assert reply.plain.startswith("😕 I don't know “Lisbn” as a place or time zone.")
    assert reply.buttons == [[("Lisbon (Europe/Lisbon)", "tz:set:Europe/Lisbon")]]
    assert user_row(bot).timezone is None
    chosen = await bot.press("Lisbon (Europe/Lisbon)")
    assert chosen.plain.startswith("🌍 Your timezone is now Europe/Lisbon. It's 09:00 there.")
    assert user_row(bot).timezone == "Europe/Lisbon"

    (nothing,) = await bot.say("/timezone <b>Qwxyz</b>")
    assert "I don't know “<b>Qwxyz</b>”" in nothing.plain
    assert nothing.buttons == []
    assert user_row(bot).timezone == "Europe/Lisbon"


async def test_timezone_without_a_name_explains_and_takes_a_typed_city(bot: Harness) -> None:
    (prompt,) = await bot.say("/timezone")
    assert prompt.plain.startswith("🌍 I'm assuming UTC for now (it's 09:00 there).")
    assert "Share my location" in prompt.plain
    assert labels(prompt) == ["📍 Share my location"]
    (answer,) = await bot.say("Lisbon")
    assert answer.plain.startswith("🌍 Your timezone is now Lisbon")
    assert user_row(bot).timezone == "Europe/Lisbon"
    (search,) = await bot.say("sunscreen")
    assert search.plain.startswith("🔎 Topics about “sunscreen”"), "only one answer was awaited"


async def test_a_command_ends_the_wait_for_a_typed_city(bot: Harness) -> None:
    await bot.say("/timezone")
    await bot.say("/help")
    (search,) = await bot.say("Lisbon")
    assert not search.plain.startswith("🌍")
    assert user_row(bot).timezone is None


async def test_changing_timezone_recomputes_every_next_occurrence(bot: Harness) -> None:
    await remind(bot, "sunscreen 08:30 daily")
    await remind(bot, "exfoliate 21:00 mon,thu")
    await remind(bot, "water 12:00 every 3 days")
    await bot.say("/reminders")
    await bot.press("⏸ Pause 3")
    woken = watch_wakes(bot)
    (reply,) = await bot.say("/timezone Asia/Kolkata")
    assert "I moved your 2 reminders to match." in reply.plain
    kolkata = ZoneInfo("Asia/Kolkata")
    sunscreen, exfoliate, water = stored(bot)
    for reminder in (sunscreen, exfoliate):
        assert reminder.next_due_at == next_occurrence(Rule.from_text(reminder.rule), kolkata, NOW)
    assert sunscreen.next_due_at == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    assert exfoliate.next_due_at == datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
    assert water.next_due_at is None, "a paused reminder stays paused"
    assert woken == [exfoliate.next_due_at]


# --- /remind with buttons ---------------------------------------------------------------------


async def test_the_button_flow_edits_one_message_from_what_to_which_days(bot: Harness) -> None:
    (flow,) = await bot.say("/remind")
    assert flow.plain.startswith("⏰ New reminder\n\nWhat should I remind you about?")
    assert labels(flow) == [
        "☀️ Sunscreen",
        "💧 Moisturize",
        "✨ Exfoliate",
        "🔔 Something else",
        "✖️ Cancel",
    ]
    when = await bot.press("☀️ Sunscreen")
    assert when.message_id == flow.message_id
    assert labels(when) == ["07:30", "08:00", "08:30", "09:00", "« Back", "✖️ Cancel"]
    days = await bot.press("08:30")
    assert days.plain.startswith("☀️ Sunscreen at 08:30\n\nWhich days?")
    assert labels(days) == ["Every day", "Weekdays", "Weekends", "« Back", "✖️ Cancel"]
    await bot.press("Weekdays")
    done = message(bot, flow.message_id)
    assert done.message_id == flow.message_id
    assert done.edits == 3
    assert done.plain.startswith("✅ Reminder set: ☀️ Sunscreen, weekdays at 08:30 (UTC time).")
    assert done.buttons == []
    (reminder,) = stored(bot)
    assert (reminder.kind, reminder.rule) == ("sunscreen", "08:30|weekdays")
    question = bot.standin.last(USER)
    assert question is not None
    assert question.plain.startswith("🌍 I assumed your timezone is UTC")


async def test_the_flow_offers_moisturizer_twice_a_day_and_gentle_exfoliation(
    bot: Harness,
) -> None:
    await bot.say("/timezone Europe/Berlin")
    await bot.say("/remind")
    when = await bot.press("💧 Moisturize")
    assert labels(when)[:3] == ["08:00 + 21:30", "08:00", "21:30"]
    await bot.press("08:00 + 21:30")
    await bot.press("Every day")

    await bot.say("/remind")
    await bot.press("✨ Exfoliate")
    days = await bot.press("21:00")
    assert labels(days)[:3] == ["Every 3 days (gentle, recommended)", "Mon & Thu", "Tue & Fri"]
    await bot.press("Every 3 days (gentle, recommended)")
    moisturize, exfoliate = stored(bot)
    assert moisturize.rule == "08:00,21:30|daily"
    assert exfoliate.rule == "21:00|every3:2026-11-26"
    assert [c for m in bot.standin.chat(USER) for c in m.callback_data()] == [], (
        "no caution for gentle choices, and no buttons left over"
    )


async def test_something_else_takes_a_typed_name_time_and_days(bot: Harness) -> None:
    await bot.say("/timezone Europe/Berlin")
    await bot.say("/remind")
    asked = await bot.press("🔔 Something else")
    assert "What should I call it?" in asked.plain
    (when,) = await bot.say("  drink <water> &   tea ")
    assert when.plain.startswith("🔔 drink <water> & tea\n\nWhen?")
    assert when.text is not None
    assert "drink &lt;water&gt; &amp; tea" in when.text
    (problem,) = await bot.say("25:00")
    assert problem.plain.startswith("😕 I couldn't read “25:00” as a time. Try again")
    assert stored(bot) == []
    (days,) = await bot.say("7:45pm")
    assert days.plain.startswith("🔔 drink <water> & tea at 19:45\n\nWhich days?")
    (done,) = await bot.say("mon, wed")
    assert done.plain.startswith(
        "✅ Reminder set: 🔔 drink <water> & tea, Mon and Wed at 19:45 (Europe/Berlin time)."
    )
    (reminder,) = stored(bot)
    assert (reminder.kind, reminder.label, reminder.rule) == (
        "custom",
        "drink <water> & tea",
        "19:45|mon,wed",
    )
    (search,) = await bot.say("sunscreen")
    assert search.plain.startswith("🔎"), "the flow is over; text is a search again"


async def test_a_typed_time_with_days_finishes_the_flow_at_once(bot: Harness) -> None:
    await bot.say("/remind")
    await bot.press("☀️ Sunscreen")
    (done, _question) = await bot.say("8:15 weekends")
    assert done.plain.startswith("✅ Reminder set: ☀️ Sunscreen, weekends at 08:15")
    assert [r.rule for r in stored(bot)] == ["08:15|weekends"]


async def test_a_typed_name_that_is_too_long_is_asked_again(bot: Harness) -> None:
    await bot.say("/remind")
    await bot.press("🔔 Something else")
    (reply,) = await bot.say("x" * 65)
    assert reply.plain.startswith("That name is too long")
    (when,) = await bot.say("vitamin C")
    assert when.plain.startswith("🔔 vitamin C\n\nWhen?")


async def test_the_flow_goes_back_and_cancels_without_storing(bot: Harness) -> None:
    await bot.say("/remind")
    await bot.press("✨ Exfoliate")
    await bot.press("20:00")
    back = await bot.press("« Back")
    assert "When?" in back.plain
    back = await bot.press("« Back")
    assert "What should I remind you about?" in back.plain
    await bot.press("💧 Moisturize")
    cancelled = await bot.press("✖️ Cancel")
    assert cancelled.plain == rt.FLOW_CANCELLED
    assert cancelled.buttons == []
    assert stored(bot) == []


async def test_flow_buttons_work_after_the_bot_forgot_everything_in_memory(
    bot: Harness,
) -> None:
    await bot.say("/remind")
    await bot.press("💧 Moisturize")
    handlers(bot)._pending.clear()  # what a restart does to memory
    await bot.press("21:30")
    handlers(bot)._pending.clear()
    await bot.press("Weekends")
    done = bot.standin.chat(USER)[0]
    assert done.plain.startswith("✅ Reminder set: 💧 Moisturize, weekends at 21:30")


async def test_a_double_tap_on_the_last_step_adds_one_reminder(bot: Harness) -> None:
    await bot.say("/timezone UTC")
    await bot.say("/remind")
    await bot.press("☀️ Sunscreen")
    days = await bot.press("08:00")
    data = "rf:days:sunscreen:0800:daily"
    first = bot.standin.press_button(USER, days.message_id, data)
    second = bot.standin.press_button(USER, days.message_id, data)
    await bot.handled(first)
    await bot.handled(second)
    assert len(stored(bot)) == 1
    assert bot.standin.chat(USER)[-1].plain.startswith("You already have that one")


# --- /reminders ------------------------------------------------------------------------------


async def test_an_empty_list_says_how_to_add_one(bot: Harness) -> None:
    (reply,) = await bot.say("/reminders")
    assert reply.plain.startswith("You have no reminders yet.")
    assert "/remind sunscreen 08:30 daily" in reply.plain


async def test_the_list_shows_each_reminder_and_pauses_and_resumes_it(bot: Harness) -> None:
    await bot.say("/timezone Europe/Berlin")
    await remind(bot, "sunscreen 08:30 daily")
    await remind(bot, "<i>serum</i> 21:00 mon,thu")
    (listing,) = await bot.say("/reminders")
    assert listing.plain == (
        "⏰ Your reminders (Europe/Berlin time)\n\n"
        "1. ☀️ Sunscreen\nevery day at 08:30 · next: tomorrow at 08:30\n\n"
        "2. 🔔 <i>serum</i>\nMon and Thu at 21:00 · next: today at 21:00"
    )
    assert labels(listing) == [
        "⏸ Pause 1",
        "✏️ Edit 1",
        "🗑 Delete 1",
        "⏸ Pause 2",
        "✏️ Edit 2",
        "🗑 Delete 2",
    ]
    paused = await bot.press("⏸ Pause 1")
    assert paused.message_id == listing.message_id
    assert "1. ☀️ Sunscreen\nevery day at 08:30 · ⏸ paused" in paused.plain
    sunscreen = stored(bot)[0]
    assert (sunscreen.paused, sunscreen.next_due_at) == (True, None)

    woken = watch_wakes(bot)
    resumed = await bot.press("▶️ Resume 1")
    assert "next: tomorrow at 08:30" in resumed.plain
    sunscreen = stored(bot)[0]
    assert sunscreen.paused is False
    assert sunscreen.next_due_at == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)
    assert woken == [sunscreen.next_due_at]


async def test_edit_asks_for_a_new_line_and_updates_the_rule(bot: Harness) -> None:
    await remind(bot, "moisturize 08:00,21:30 daily")
    await bot.say("/reminders")
    prompt = await bot.press("✏️ Edit 1")
    assert prompt.plain.startswith("✏️ 💧 Moisturize is set for every day at 08:00 and 21:30.")
    (problem,) = await bot.say("25:00 weekdays")
    assert problem.plain.startswith("😕 I couldn't read “25:00” as a time.")
    assert stored(bot)[0].rule == "08:00,21:30|daily"

    woken = watch_wakes(bot)
    (updated,) = await bot.say("07:30 weekdays")
    assert updated.plain.startswith("✅ Updated: 💧 Moisturize, weekdays at 07:30.")
    assert "Next: tomorrow at 07:30." in updated.plain
    (reminder,) = stored(bot)
    assert reminder.rule == "07:30|weekdays"
    assert reminder.next_due_at == next_occurrence(Rule.from_text(reminder.rule), UTC, NOW)
    assert woken == [reminder.next_due_at]

    await bot.say("/reminders")
    await bot.press("✏️ Edit 1")
    (kept_days,) = await bot.say("9:00")
    assert kept_days.plain.startswith("✅ Updated: 💧 Moisturize, weekdays at 09:00.")


async def test_editing_exfoliation_to_every_day_gets_the_caution(bot: Harness) -> None:
    await remind(bot, "exfoliate 21:00 mon,thu")
    await bot.say("/reminders")
    await bot.press("✏️ Edit 1")
    updated, caution = await bot.say("21:00 daily")
    assert updated.plain.startswith("✅ Updated: ✨ Exfoliate, every day at 21:00.")
    assert "about 7 exfoliations a week" in caution.plain


async def test_edit_can_be_cancelled(bot: Harness) -> None:
    await remind(bot, "sunscreen 08:30 daily")
    await bot.say("/reminders")
    await bot.press("✏️ Edit 1")
    listing = await bot.press("✖️ Cancel")
    assert listing.plain.startswith("⏰ Your reminders")
    (search,) = await bot.say("09:00 daily")
    # After Cancel, text is a guide search again (whatever it finds), not the new rule.
    assert search.plain.startswith(("🔎", "I couldn't find", "I don't have a topic"))
    assert stored(bot)[0].rule == "08:30|daily"


async def test_delete_asks_first_and_removes_the_reminder_and_its_history(bot: Harness) -> None:
    reminder = await remind(bot, "sunscreen 08:30 daily")
    assert reminder.id is not None
    add_occurrence(bot, reminder.id, status="done")
    await bot.say("/reminders")
    question = await bot.press("🗑 Delete 1")
    assert question.plain == "Delete ☀️ Sunscreen (every day at 08:30)?"
    kept = await bot.press("No, keep it")
    assert kept.plain.startswith("⏰ Your reminders")
    assert len(stored(bot)) == 1
    await bot.press("🗑 Delete 1")
    gone = await bot.press("Yes, delete it")
    assert gone.plain.startswith("🗑 Deleted.\n\nYou have no reminders yet.")
    assert stored(bot) == []
    with new_session(bot.engine) as session:
        assert list(session.exec(select(Occurrence))) == []


async def test_a_long_list_is_split_into_pages(bot: Harness) -> None:
    await bot.say("/start")
    with new_session(bot.engine) as session:
        for minute in range(20):
            spec = parse_remind(f"{'x' * 60}{minute:02d} 08:{minute:02d} daily", today=NOW.date())
            repo.add_reminder(session=session, user_id=USER, spec=spec, now=NOW, default_key="UTC")
    (first,) = await bot.say("/reminders")
    assert "page 1 of 3" in first.plain
    assert len(first.plain) < 4096
    assert labels(first)[-1] == "Next »"
    assert "8. " in first.plain
    assert "9. " not in first.plain
    second = await bot.press("Next »")
    assert "page 2 of 3" in second.plain
    assert labels(second)[-2:] == ["« Previous", "Next »"]
    await bot.press("🗑 Delete 9")
    after = await bot.press("Yes, delete it")
    assert "page 2 of 3" in after.plain
    assert len(stored(bot)) == 19


async def test_another_users_reminder_cannot_be_touched(bot: Harness) -> None:
    await bot.say("/start", user_id=OTHER_USER)
    with new_session(bot.engine) as session:
        theirs = repo.add_reminder(
            session=session,
            user_id=OTHER_USER,
            spec=parse_remind("sunscreen 08:30", today=NOW.date()),
            now=NOW,
            default_key="UTC",
        )
    assert theirs.id is not None
    # A forged button: the stand-in only presses buttons that exist, so send one.
    forged = InlineKeyboardButton("⏸ Pause", callback_data=f"rm:pause:{theirs.id}:0")
    await bot.app.bot.send_message(USER, "forged", reply_markup=InlineKeyboardMarkup([[forged]]))
    pressed = await bot.press("⏸ Pause")
    assert bot.standin.answered_callbacks[-1].text == rt.REMINDER_GONE
    assert pressed.plain.startswith("You have no reminders yet.")
    with new_session(bot.engine) as session:
        again = session.get(Reminder, theirs.id)
    assert again is not None
    assert (again.paused, again.next_due_at) == (False, theirs.next_due_at)


# --- quiet hours ------------------------------------------------------------------------------


async def test_quiet_hours_are_shown_set_and_switched_off(bot: Harness) -> None:
    (none,) = await bot.say("/quiet")
    assert none.plain.startswith("🌙 You have no quiet hours.")
    assert "/quiet 22:00-07:00" in none.plain
    (done,) = await bot.say("/quiet 22:00-07:00")
    assert done.plain.startswith("🌙 Quiet hours set: from 22:00 to 07:00 (UTC time).")
    prefs = preferences(bot)
    assert prefs is not None
    assert (prefs.quiet_start, prefs.quiet_end) == ("22:00", "07:00")
    (shown,) = await bot.say("/quiet")
    assert shown.plain.startswith("🌙 Your quiet hours: from 22:00 to 07:00 (UTC time).")
    (off,) = await bot.say("/quiet off")
    assert off.plain == rt.QUIET_OFF
    prefs = preferences(bot)
    assert prefs is not None
    assert (prefs.quiet_start, prefs.quiet_end) == (None, None)


@pytest.mark.parametrize("argument", ["25:00-07:00", "later", "22:00-22:00", "<b>x</b>"])
async def test_quiet_hours_that_cannot_be_read_change_nothing(bot: Harness, argument: str) -> None:
    await bot.say("/quiet 23:00-06:30")
    (reply,) = await bot.say(f"/quiet {argument}")
    assert reply.plain.startswith("😕 ")
    assert "Nothing was changed." in reply.plain
    assert "/quiet 22:00-07:00" in reply.plain
    prefs = preferences(bot)
    assert prefs is not None
    assert (prefs.quiet_start, prefs.quiet_end) == ("23:00", "06:30")


# --- /stop and /start ------------------------------------------------------------------------


async def test_stop_pauses_everything_and_start_offers_to_resume(bot: Harness) -> None:
    (nothing,) = await bot.say("/stop")
    assert nothing.plain == rt.NOTHING_TO_STOP
    assert preferences(bot) is None
    await remind(bot, "sunscreen 08:30 daily")
    await remind(bot, "exfoliate 21:00 mon,thu")
    (stopped,) = await bot.say("/stop")
    assert stopped.plain.startswith("⏸ I've paused all 2 of your reminders.")
    assert "/start" in stopped.plain
    assert all(r.next_due_at is None for r in stored(bot))
    prefs = preferences(bot)
    assert prefs is not None
    assert prefs.reminders_paused
    (again,) = await bot.say("/stop")
    assert again.plain == rt.ALREADY_STOPPED
    (listing,) = await bot.say("/reminders")
    assert "⏸ paused (all)" in listing.plain

    (welcome,) = await bot.say("/start")
    assert "I'm MiliaBot" in welcome.plain
    assert welcome.plain.endswith("⏸ Your reminders are paused.")
    assert labels(welcome) == ["▶️ Resume reminders"]
    woken = watch_wakes(bot)
    resumed = await bot.press("▶️ Resume reminders")
    assert resumed.message_id == welcome.message_id
    assert "I'm MiliaBot" in resumed.plain, "the welcome stays; the answer is added"
    assert resumed.plain.endswith(
        "or dermatologist.\n\n▶️ Your reminders are on again. Next: ✨ Exfoliate, today at 21:00."
    ), "the answer takes the place of the question"
    assert resumed.buttons == []
    prefs = preferences(bot)
    assert prefs is not None
    assert not prefs.reminders_paused
    sunscreen, exfoliate = stored(bot)
    assert sunscreen.next_due_at == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    assert woken == [exfoliate.next_due_at]
    (plain_start,) = await bot.say("/start")
    assert plain_start.buttons == []


async def test_stop_has_a_button_to_undo_it(bot: Harness) -> None:
    await remind(bot, "sunscreen 08:30 daily")
    (stopped,) = await bot.say("/stop")
    assert stopped.plain.startswith("⏸ I've paused your reminder.")
    resumed = await bot.press("▶️ Resume now")
    assert resumed.plain.endswith(
        "\n\n▶️ Your reminder is on again. Next: ☀️ Sunscreen, tomorrow at 08:30."
    )
    assert stored(bot)[0].next_due_at == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    again = await bot.say("/reminders")
    assert "paused" not in again[0].plain


async def test_there_is_a_limit_on_reminders_per_person(bot: Harness) -> None:
    await bot.say("/timezone UTC")
    with new_session(bot.engine) as session:
        for minute in range(50):
            spec = parse_remind(f"water 10:{minute:02d}", today=NOW.date())
            repo.add_reminder(session=session, user_id=USER, spec=spec, now=NOW, default_key="UTC")
    (reply,) = await bot.say("/remind sunscreen 08:30 daily")
    assert reply.plain.startswith("You have 50 reminders, the most I keep for one person.")
    assert len(stored(bot)) == 50


async def test_a_reminder_added_while_paused_says_so(bot: Harness) -> None:
    await remind(bot, "sunscreen 08:30 daily")
    await bot.say("/stop")
    (reply,) = await bot.say("/remind moisturize 21:30 daily")
    assert "Your reminders are paused for now; send /start" in reply.plain
    assert stored(bot)[-1].next_due_at is None


# --- the reminder message --------------------------------------------------------------------


async def test_done_records_the_outcome_and_keeps_the_message(bot: Harness) -> None:
    reminder = await remind(bot, "sunscreen 08:30 daily")
    assert reminder.id is not None
    occurrence_id = add_occurrence(bot, reminder.id)
    sent = await send_reminder(bot, reminder, occurrence_id)
    reminder_text = sent.plain  # the stand-in's message object changes with each edit
    assert reminder_text.startswith("☀️ Time for sunscreen!\n\n💡 Tip: ")
    assert labels(sent) == ["✅ Done", "😴 15 min", "😴 1 hour", "⏭ Skip"]
    done = await bot.press("✅ Done")
    assert done.message_id == sent.message_id
    assert done.plain == f"{reminder_text}\n\n✅ Done — nice work!"
    assert done.buttons == []
    row = occurrence(bot, occurrence_id)
    assert (row.status, row.outcome_at) == ("done", NOW)


async def test_skip_records_the_outcome(bot: Harness) -> None:
    reminder = await remind(bot, "water 12:00 daily")
    assert reminder.id is not None
    occurrence_id = add_occurrence(bot, reminder.id)
    sent = await send_reminder(bot, reminder, occurrence_id)
    assert sent.plain == "🔔 water"
    skipped = await bot.press("⏭ Skip")
    assert skipped.plain == "🔔 water\n\n⏭ Skipped"
    assert occurrence(bot, occurrence_id).status == "skipped"


async def test_snooze_schedules_a_follow_up_without_moving_the_schedule(bot: Harness) -> None:
    await bot.say("/timezone Europe/Berlin")
    reminder = await remind(bot, "moisturize 08:00,21:30 daily")
    assert reminder.id is not None
    next_due = reminder.next_due_at
    occurrence_id = add_occurrence(bot, reminder.id)
    await send_reminder(bot, reminder, occurrence_id)
    woken = watch_wakes(bot)
    snoozed = await bot.press("😴 15 min")
    assert snoozed.plain.endswith("\n\n😴 I'll remind you again at 10:15.")  # Berlin time
    assert snoozed.buttons == []
    row = occurrence(bot, occurrence_id)
    assert (row.status, row.due_at, row.snoozes) == ("snoozed", NOW + timedelta(minutes=15), 1)
    assert woken == [NOW + timedelta(minutes=15)]
    assert stored(bot)[0].next_due_at == next_due, "the recurring schedule does not move"


async def test_a_snooze_into_quiet_hours_lands_at_their_end(bot: Harness) -> None:
    reminder = await remind(bot, "moisturize 21:30 daily")
    assert reminder.id is not None
    await bot.say("/quiet 22:00-07:00")
    bot.clock.now = datetime(2026, 11, 26, 21, 30, tzinfo=UTC)
    occurrence_id = add_occurrence(bot, reminder.id)
    await send_reminder(bot, reminder, occurrence_id)
    snoozed = await bot.press("😴 1 hour")
    assert snoozed.plain.endswith(
        "😴 That falls in your quiet hours, so I'll remind you again tomorrow at 07:00, "
        "when they end."
    )
    row = occurrence(bot, occurrence_id)
    assert row.due_at == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    assert (row.status, row.snoozes) == ("snoozed", 1)


async def test_a_finished_or_foreign_occurrence_changes_nothing(bot: Harness) -> None:
    reminder = await remind(bot, "sunscreen 08:30 daily")
    assert reminder.id is not None
    await bot.say("/start", user_id=OTHER_USER)
    with new_session(bot.engine) as session:
        theirs = repo.add_reminder(
            session=session,
            user_id=OTHER_USER,
            spec=parse_remind("exfoliate 21:00 mon", today=NOW.date()),
            now=NOW,
            default_key="UTC",
        )
    assert theirs.id is not None
    foreign = add_occurrence(bot, theirs.id, user_id=OTHER_USER)
    sent = await send_reminder(bot, reminder, foreign)
    before = sent.plain
    await bot.press("✅ Done")
    assert bot.standin.answered_callbacks[-1].text == rt.OCCURRENCE_GONE
    assert bot.standin.answered_callbacks[-1].show_alert
    assert occurrence(bot, foreign).status == "sent"
    assert (sent.edits, sent.plain, len(sent.buttons)) == (0, before, 2)

    finished = add_occurrence(bot, reminder.id, status="done")
    await send_reminder(bot, reminder, finished)
    await bot.press("😴 15 min")
    assert bot.standin.answered_callbacks[-1].text == "Already marked done. ✅"
    row = occurrence(bot, finished)
    assert (row.status, row.snoozes) == ("done", 0)


# --- reminders.texts on its own ----------------------------------------------------------------


def test_reminder_message_text_for_each_kind_late_and_follow_up() -> None:
    at = datetime(2026, 11, 26, 8, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    text, keyboard = rt.reminder_message(
        occurrence_id=7,
        kind="custom",
        label="<b>vit C</b> & co",
        tip=None,
        scheduled_local=at,
        late=True,
        follow_up=True,
    )
    assert text == (
        "🔔 <b>&lt;b&gt;vit C&lt;/b&gt; &amp; co</b> (snoozed)\n"
        "<i>This was due at 08:30; I was offline.</i>"
    )
    data = [b.callback_data for row in keyboard.inline_keyboard for b in row]
    assert data == ["occ:done:7", "occ:snooze:7:15", "occ:snooze:7:60", "occ:skip:7"]
    headings = {
        kind: rt.reminder_message(
            occurrence_id=1,
            kind=kind,
            label=kind,
            tip="Be <b>gentle</b>.",
            scheduled_local=at,
            late=False,
            follow_up=False,
        )[0]
        for kind in ("sunscreen", "moisturize", "exfoliate")
    }
    assert headings["sunscreen"] == "☀️ <b>Time for sunscreen!</b>\n\n💡 Tip: Be <b>gentle</b>."
    assert headings["moisturize"].startswith("💧 <b>Time to moisturize</b>")
    assert headings["exfoliate"].startswith("✨ <b>Exfoliation evening</b>")


def test_tips_rotate_through_the_guide_and_custom_kinds_have_none() -> None:
    tips = GUIDE.tips["sunscreen"]
    shown = [rt.tip_for(GUIDE, "sunscreen", n) for n in range(len(tips))]
    assert sorted(t for t in shown if t) == sorted(tips)
    assert rt.tip_for(GUIDE, "sunscreen", len(tips)) == shown[0]
    assert rt.tip_for(GUIDE, "custom", 3) is None


def test_every_callback_fits_in_64_bytes() -> None:
    six_times = tuple(time(h, 59) for h in range(18, 24))
    longest_key = max(zoneinfo.available_timezones(), key=len)
    markups = [
        rt.flow_kinds()[1],
        rt.flow_label()[1],
        *(rt.flow_times(kind, "x" * 64)[1] for kind in rt.KINDS),
        *(rt.flow_days(kind, "x" * 64, six_times)[1] for kind in rt.KINDS),
        rt.timezone_question(longest_key, NOW)[1],
        rt.timezone_unknown("no", [("x" * 64, longest_key)])[1],
        rt.reminder_message(
            occurrence_id=2**63 - 1,
            kind="custom",
            label="x",
            tip=None,
            scheduled_local=NOW,
            late=False,
            follow_up=False,
        )[1],
    ]
    listed = [
        rt.Listed(2**63 - 1 - n, "custom", "y" * 64, Rule((time(8),)), n % 2 == 0, None)
        for n in range(30)
    ]
    markups.append(rt.reminder_list(listed, page=3, zone="UTC", all_paused=True)[1])
    for markup in markups:
        assert markup is not None
        for row in markup.inline_keyboard:
            for button in row:
                assert button.callback_data is not None
                assert len(str(button.callback_data).encode()) <= 64, button.callback_data


def test_the_longest_list_page_fits_in_one_message() -> None:
    listed = [
        rt.Listed(
            n,
            "custom",
            "&" * 64,
            Rule(tuple(time(h, 30) for h in range(6)), EveryNDays(29, NOW.date())),
            False,
            "Wed 30 Dec 2026 at 21:00",
        )
        for n in range(200)
    ]
    text, _ = rt.reminder_list(
        listed, page=0, zone="America/Argentina/ComodRivadavia", all_paused=True
    )
    assert len(text) < 4096


def test_when_reads_like_a_person_would_say_it() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert rt.when(datetime(2026, 11, 26, 20, 0, tzinfo=UTC), NOW, berlin) == "today at 21:00"
    assert rt.when(datetime(2026, 11, 26, 23, 30, tzinfo=UTC), NOW, berlin) == ("tomorrow at 00:30")
    assert rt.when(datetime(2026, 12, 3, 20, 0, tzinfo=UTC), NOW, berlin) == ("Thu 3 Dec at 21:00")
    assert rt.when(datetime(2027, 1, 4, 7, 0, tzinfo=UTC), NOW, berlin) == (
        "Mon 4 Jan 2027 at 08:00"
    )


@pytest.mark.postgres
async def test_reminders_work_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    async with running_bot(tmp_path, database_url=postgres_url) as harness:
        reminder = await remind(harness, "sunscreen 08:30 daily")
        assert reminder.next_due_at == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
        await harness.say("/reminders")
        await harness.press("⏸ Pause 1")
        assert stored(harness)[0].next_due_at is None
        await harness.press("▶️ Resume 1")
        assert reminder.id is not None
        occurrence_id = add_occurrence(harness, reminder.id)
        await send_reminder(harness, reminder, occurrence_id)
        await harness.press("😴 1 hour")
        row = occurrence(harness, occurrence_id)
        assert (row.status, row.due_at, row.snoozes) == ("snoozed", NOW + timedelta(hours=1), 1)
        assert harness.failures() == []
