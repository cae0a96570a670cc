"""Digits people may type: any script's decimal digits are read; look-alikes get usage.

`str.isdigit` says yes to "²" and "①", which `int()` then refuses with ValueError; the bot
answered such a line with an apology instead of its usage text. Every parser now reads
Unicode decimal digits (Arabic-Indic, Persian, full-width...) as their ASCII digits and
matches `[0-9]` only, so everything else that looks like a number is simply not one.
"""

from collections.abc import AsyncIterator
from datetime import date, time
from pathlib import Path

import pytest

from miliabot_tg import repo
from miliabot_tg.broadcasts import Audience, BroadcastError
from miliabot_tg.console import button_number
from miliabot_tg.db import new_session
from miliabot_tg.models import Reminder, UserPreferences
from miliabot_tg.reminders import texts as rt
from miliabot_tg.schedule import (
    DAILY,
    EveryNDays,
    ParseError,
    ascii_digits,
    parse_quiet,
    parse_remind,
)
from miliabot_tg.timezones import TimezoneError, resolve_timezone
from tests.harness import USER, Harness, running_bot

TODAY = date(2026, 11, 26)
# Characters `str.isdigit` accepts but `int()` does not: superscripts, circled digits.
LOOK_ALIKES = ["²", "³", "①", "⑵", "𝟚" + "²"]
# Not digits at all, though they stand for numbers.
NUMBERISH = ["Ⅻ", "¼", "三"]


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path) as harness:
        yield harness
        assert harness.failures() == [], "the bot sent something Telegram would refuse"


def stored(bot: Harness) -> list[Reminder]:
    """The user's own reminders (not the hidden weekly summary or outdoor reapplies)."""
    with new_session(bot.engine) as session:
        return repo.list_reminders(session=session, user_id=USER)


# --- the parsers -----------------------------------------------------------------------------


def test_ascii_digits_maps_every_decimal_digit_one_character_for_one() -> None:
    assert ascii_digits("٠٨:٣٠ ۹pm ０７ 𝟠 ᠒") == "08:30 9pm 07 8 2"
    assert ascii_digits("x² ① ¼ Ⅻ") == "x² ① ¼ Ⅻ", "look-alikes stay as typed"
    assert ascii_digits("sunscreen 08:30") == "sunscreen 08:30"


@pytest.mark.parametrize("odd", LOOK_ALIKES + NUMBERISH)
def test_every_n_days_with_a_look_alike_is_a_parse_error(odd: str) -> None:
    with pytest.raises(ParseError, match="as a number of days"):
        parse_remind(f"x 08:00 every {odd} days", today=TODAY)


@pytest.mark.parametrize("odd", LOOK_ALIKES + NUMBERISH)
@pytest.mark.parametrize(
    "line", ["x {d}{d}:00", "x 0{d}:00 daily", "x {d}pm", "x 08:{d}0 weekdays"]
)
def test_times_with_look_alikes_are_parse_errors(odd: str, line: str) -> None:
    with pytest.raises(ParseError):
        parse_remind(line.format(d=odd), today=TODAY)


@pytest.mark.parametrize("odd", LOOK_ALIKES + NUMBERISH)
def test_quiet_hours_with_look_alikes_are_parse_errors(odd: str) -> None:
    with pytest.raises(ParseError):
        parse_quiet(f"2{odd}:00-07:00")
    with pytest.raises(ParseError):
        parse_quiet(f"22-{odd}")


@pytest.mark.parametrize("odd", LOOK_ALIKES + NUMBERISH)
def test_offsets_and_audiences_with_look_alikes_are_refused_politely(odd: str) -> None:
    with pytest.raises(TimezoneError):
        resolve_timezone(f"UTC+{odd}")
    with pytest.raises(BroadcastError):
        Audience.parse(f"active:{odd}")


def test_decimal_digits_of_any_script_read_as_their_value() -> None:
    arabic = parse_remind("vitamin D٣ ٠٨:٣٠ every ٣ days", today=TODAY)
    assert arabic.label == "vitamin D٣", "the label stays as typed"
    assert arabic.rule.times == (time(8, 30),)
    assert arabic.rule.days == EveryNDays(3, TODAY)
    wide = parse_remind("spf ９pm", today=TODAY)
    assert (wide.label, wide.rule.times, wide.rule.days) == ("spf", (time(21, 0),), DAILY)
    quiet = parse_quiet("۲۲:۰۰-۰۷:۰۰")
    assert quiet is not None and (quiet.start, quiet.end) == (time(22, 0), time(7, 0))
    assert resolve_timezone("UTC+٥:٣٠").key == "+05:30"
    assert Audience.parse("active:٣٠") == Audience(active_days=30)


@pytest.mark.parametrize(
    "line",
    [
        "sunscreen 08:30 daily",
        "moisturize 8am, 9:30pm weekdays",
        "exfoliate 21:00 every 3 days",
        "tea @ 7:15 mon-wed, fri",
        "sunscreen daily 08:30",
        "read 08:00 every 31 days",
        "a 25:00",
        "b 07:61",
        "c 13pm",
        "d 08:00 every 00003 days",
        "e 08:00 every 12345 days",
    ],
)
def test_ascii_lines_parse_exactly_as_before(line: str) -> None:
    """The same line with ASCII digits and with Arabic-Indic digits gives the same answer."""
    arabic = line.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))

    def outcome(text: str) -> object:
        try:
            spec = parse_remind(text, today=TODAY)
        except ParseError as exc:
            return ascii_digits(exc.message)
        return (spec.kind, ascii_digits(spec.label), spec.rule)

    assert outcome(arabic) == outcome(line)


def test_a_number_of_days_too_long_for_int_is_out_of_range_not_a_crash() -> None:
    with pytest.raises(ParseError, match="I can repeat every 2 to 30 days, not every 9999"):
        parse_remind(f"x 08:00 every {'9' * 5000} days", today=TODAY)
    assert parse_remind("x 08:00 every 0000000000003 days", today=TODAY).rule.days == (
        EveryNDays(3, TODAY)
    )


def test_console_buttons_are_numbers_and_look_alikes_are_messages() -> None:
    assert [button_number(t) for t in ["1", " 12 ", "٣", "０２"]] == [1, 12, 3, 2]
    assert [button_number(t) for t in ["²", "①", "1²", "", "one", "9" * 5000]] == [None] * 6


# --- through the real bot --------------------------------------------------------------------


@pytest.mark.parametrize("odd", ["²", "①", "³"])
async def test_remind_every_look_alike_days_gets_usage_and_stores_nothing(
    bot: Harness, odd: str
) -> None:
    (reply,) = await bot.say(f"/remind x 08:00 every {odd} days")
    assert reply.plain.startswith(
        f"😕 I couldn't read “{odd}” as a number of days. Nothing was saved."
    )
    for example in rt.EXAMPLES:
        assert example in reply.plain
    assert stored(bot) == []


async def test_typed_days_in_the_flow_with_a_look_alike_ask_again(bot: Harness) -> None:
    await bot.say("/remind")
    await bot.press("☀️ Sunscreen")
    await bot.press("08:30")
    (problem,) = await bot.say("every ² days")
    assert problem.plain.startswith("😕 I couldn't read “²” as a number of days. Try again")
    assert stored(bot) == []
    await bot.say("every ٣ days")
    (reminder,) = stored(bot)
    assert reminder.rule.startswith("08:30|every3:")


async def test_editing_a_rule_with_a_look_alike_keeps_the_old_rule(bot: Harness) -> None:
    await bot.say("/remind moisturize 08:00 daily")
    await bot.say("/reminders")
    await bot.press("✏️ Edit 1")
    (problem,) = await bot.say("08:00 every ① days")
    assert problem.plain.startswith("😕 I couldn't read “①” as a number of days.")
    assert stored(bot)[0].rule == "08:00|daily"


async def test_quiet_hours_and_offsets_in_other_scripts_work_and_look_alikes_do_not(
    bot: Harness,
) -> None:
    (problem,) = await bot.say("/quiet 2²:00-07:00")
    assert problem.plain.startswith("😕 Send quiet hours like “22:00-07:00”")
    (done,) = await bot.say("/quiet ٢٢:٠٠-٠٧:٠٠")
    assert "from 22:00 to 07:00" in done.plain
    with new_session(bot.engine) as session:
        prefs = session.get(UserPreferences, USER)
    assert prefs is not None and (prefs.quiet_start, prefs.quiet_end) == ("22:00", "07:00")
    (zone,) = await bot.say("/timezone UTC+①")
    assert zone.plain.startswith("😕 I don't know “UTC+①” as a place or time zone")
    (zone,) = await bot.say("/timezone UTC+٥:٣٠")
    assert zone.plain.startswith("🌍 Your timezone is now UTC+05:30.")
