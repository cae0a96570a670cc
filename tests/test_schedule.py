"""Behaviour of reminder parsing, rules, occurrences across DST, quiet hours and snooze."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from miliabot_tg.schedule import (
    DAILY,
    WEEKDAYS,
    WEEKENDS,
    EveryNDays,
    ParseError,
    QuietHours,
    Rule,
    WeekdaySet,
    defer_out_of_quiet,
    describe,
    describe_quiet,
    next_occurrence,
    occurrences_between,
    parse_quiet,
    parse_remind,
    snooze_until,
    times_per_week,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))
MINUS_3 = timezone(timedelta(hours=-3))
TODAY = date(2026, 11, 26)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def at(
    tz: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """An aware local datetime in ``tz`` (fold=1 picks the second of a repeated time)."""
    return datetime(year, month, day, hour, minute, tzinfo=tz, fold=fold)


def daily(*times: time) -> Rule:
    return Rule(times)


def local_walls(instants: list[datetime], tz: tzinfo) -> list[str]:
    return [i.astimezone(tz).strftime("%Y-%m-%d %H:%M %z") for i in instants]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("command", "kind", "label", "rule_text"),
    [
        ("sunscreen 08:30 daily", "sunscreen", "sunscreen", "08:30|daily"),
        ("moisturize 08:00,21:30 weekdays", "moisturize", "moisturize", "08:00,21:30|weekdays"),
        ("exfoliate 21:00 mon,thu", "exfoliate", "exfoliate", "21:00|mon,thu"),
        ("exfoliate 21:00 every 3 days", "exfoliate", "exfoliate", "21:00|every3:2026-11-26"),
        ("water 12:00 daily", "custom", "water", "12:00|daily"),
    ],
)
def test_example_commands_parse_to_the_documented_spec(
    command: str, kind: str, label: str, rule_text: str
) -> None:
    spec = parse_remind(command, today=TODAY)
    assert (spec.kind, spec.label, spec.rule.to_text()) == (kind, label, rule_text)


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("SPF", "sunscreen"),
        ("sunblock", "sunscreen"),
        ("Sunscreen", "sunscreen"),
        ("moisturise", "moisturize"),
        ("Moisturizer", "moisturize"),
        ("MOISTURISER", "moisturize"),
        ("moisturizing", "moisturize"),
        ("exfoliation", "exfoliate"),
        ("Exfoliating", "exfoliate"),
        ("retinol", "custom"),
    ],
)
def test_kind_aliases_are_case_insensitive_and_the_label_stays_as_typed(
    word: str, kind: str
) -> None:
    spec = parse_remind(f"{word} 08:30", today=TODAY)
    assert spec.kind == kind
    assert spec.label == word


def test_label_is_everything_before_the_first_time_trimmed_and_unescaped() -> None:
    spec = parse_remind("   Drink  <b>water</b> & tea   12:00 daily  ", today=TODAY)
    assert spec.kind == "custom"
    assert spec.label == "Drink  <b>water</b> & tea"


def test_label_of_exactly_64_characters_is_accepted() -> None:
    assert parse_remind("a" * 64 + " 08:00", today=TODAY).label == "a" * 64


def test_a_trailing_at_is_not_part_of_the_label() -> None:
    spec = parse_remind("SPF at 8:30 weekends", today=TODAY)
    assert (spec.kind, spec.label, spec.rule.to_text()) == ("sunscreen", "SPF", "08:30|weekends")


def test_days_written_before_the_time_are_understood() -> None:
    spec = parse_remind("sunscreen daily at 8:30", today=TODAY)
    assert (spec.label, spec.rule.to_text()) == ("sunscreen", "08:30|daily")
    spec = parse_remind("mask mon, thu 20:00", today=TODAY)
    assert (spec.label, spec.rule.to_text()) == ("mask", "20:00|mon,thu")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("08:30", time(8, 30)),
        ("8:30", time(8, 30)),
        ("0:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("8am", time(8, 0)),
        ("8 am", time(8, 0)),
        ("8AM", time(8, 0)),
        ("9:30pm", time(21, 30)),
        ("12am", time(0, 0)),
        ("12:15am", time(0, 15)),
        ("12pm", time(12, 0)),
        ("12:45pm", time(12, 45)),
        ("1pm", time(13, 0)),
        ("7 p.m.", time(19, 0)),
    ],
)
def test_each_time_form_is_read_as_a_24_hour_time(token: str, expected: time) -> None:
    assert parse_remind(f"sunscreen {token} daily", today=TODAY).rule.times == (expected,)


def test_several_times_are_deduplicated_and_sorted() -> None:
    spec = parse_remind("moisturize 21:30, 08:00,8am and 9:30pm", today=TODAY)
    assert spec.rule.times == (time(8, 0), time(21, 30))


def test_times_may_be_separated_by_spaces() -> None:
    assert parse_remind("moisturise 08:00 21:30", today=TODAY).rule.to_text() == (
        "08:00,21:30|daily"
    )


def test_six_times_are_allowed() -> None:
    spec = parse_remind("water 8:00,10:00,12:00,14:00,16:00,18:00", today=TODAY)
    assert len(spec.rule.times) == 6


@pytest.mark.parametrize(
    ("days_text", "expected"),
    [
        ("", DAILY),
        ("daily", DAILY),
        ("every day", DAILY),
        ("Every Day", DAILY),
        ("every 1 days", DAILY),
        ("every 1 day", DAILY),
        ("weekdays", WEEKDAYS),
        ("on weekdays", WEEKDAYS),
        ("mon-fri", WEEKDAYS),
        ("weekends", WEEKENDS),
        ("sat,sun", WEEKENDS),
        ("mon,thu", WeekdaySet(frozenset({0, 3}))),
        ("mon, thu", WeekdaySet(frozenset({0, 3}))),
        ("mon thu", WeekdaySet(frozenset({0, 3}))),
        ("Monday,Thursday", WeekdaySet(frozenset({0, 3}))),
        ("MON and THU", WeekdaySet(frozenset({0, 3}))),
        ("tuesdays", WeekdaySet(frozenset({1}))),
        ("wed, Friday, sunday", WeekdaySet(frozenset({2, 4, 6}))),
        ("fri-mon", WeekdaySet(frozenset({4, 5, 6, 0}))),
        ("every 3 days", EveryNDays(3, TODAY)),
        ("every other day", EveryNDays(2, TODAY)),
        ("every 30 days", EveryNDays(30, TODAY)),
    ],
)
def test_each_day_form_is_understood(days_text: str, expected: object) -> None:
    assert parse_remind(f"exfoliate 21:00 {days_text}", today=TODAY).rule.days == expected


def test_every_n_days_counts_from_the_given_local_today() -> None:
    spec = parse_remind("exfoliate 21:00 every 3 days", today=date(2027, 1, 5))
    assert spec.rule.days == EveryNDays(3, date(2027, 1, 5))


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("sunscreen 25:00 daily", "I couldn't read “25:00” as a time."),
        ("sunscreen 8:61", "I couldn't read “8:61” as a time."),
        ("sunscreen 13pm", "I couldn't read “13pm” as a time."),
        ("sunscreen 0am", "I couldn't read “0am” as a time."),
        ("sunscreen 8:5", "I couldn't read “8:5” as a time."),
        ("exfoliate 21:00 every 0 days", "I can repeat every 2 to 30 days, not every 0."),
        ("exfoliate 21:00 every 99 days", "I can repeat every 2 to 30 days, not every 99."),
        ("exfoliate 21:00 every few days", "I couldn't read “few” as a number of days."),
        ("exfoliate 21:00 mon,funday", "I couldn't read “funday” as a day."),
        ("sunscreen daily", "I couldn't find a time in that; add one like 08:30 or 9pm."),
        ("sunscreen", "I couldn't find a time in that; add one like 08:30 or 9pm."),
        ("08:30 daily", "Start with what to remind you about, like “sunscreen 08:30”."),
        ("daily 08:30", "Start with what to remind you about, like “sunscreen 08:30”."),
        ("", "Tell me what to remind you about and when, like “sunscreen 08:30 daily”."),
        ("   ", "Tell me what to remind you about and when, like “sunscreen 08:30 daily”."),
        ("a" * 65 + " 08:00", "That name is too long; please keep it to 64 characters."),
        (
            "water 1:00,2:00,3:00,4:00,5:00,6:00,7:00",
            "That's more than 6 times a day; please pick up to 6.",
        ),
        ("water 08:00 daily 21:00", "Please put all the times together, like “08:00,21:30”."),
    ],
)
def test_bad_input_raises_a_parse_error_with_one_friendly_sentence(
    command: str, message: str
) -> None:
    with pytest.raises(ParseError) as caught:
        parse_remind(command, today=TODAY)
    assert caught.value.message == message
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------- rules


ROUND_TRIP_RULES = [
    Rule((time(8, 30),)),
    Rule((time(8, 0), time(21, 30)), WEEKDAYS),
    Rule((time(10, 0),), WEEKENDS),
    Rule((time(21, 0),), WeekdaySet(frozenset({0, 3}))),
    Rule((time(0, 0), time(23, 59)), WeekdaySet(frozenset({6}))),
    Rule((time(21, 0),), EveryNDays(3, date(2026, 11, 26))),
    Rule((time(7, 5),), EveryNDays(30, date(1999, 12, 31))),
    Rule(tuple(time(h, 0) for h in range(6)), WeekdaySet(frozenset({1, 2, 4, 5}))),
]


@pytest.mark.parametrize("rule", ROUND_TRIP_RULES, ids=lambda r: r.to_text())
def test_rule_text_round_trips(rule: Rule) -> None:
    text = rule.to_text()
    assert Rule.from_text(text) == rule
    assert Rule.from_text(text).to_text() == text


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (Rule((time(21, 30), time(8, 0)), WeekdaySet(frozenset({3, 0}))), "08:00,21:30|mon,thu"),
        (Rule((time(21, 0),), EveryNDays(3, date(2026, 11, 26))), "21:00|every3:2026-11-26"),
        (Rule((time(8, 30),), WeekdaySet(frozenset(range(7)))), "08:30|daily"),
        (Rule((time(8, 30),), WeekdaySet(frozenset(range(5)))), "08:30|weekdays"),
    ],
)
def test_rule_text_is_compact_and_canonical(rule: Rule, text: str) -> None:
    assert rule.to_text() == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "08:00",
        "08:00|",
        "8:00|daily",
        "24:00|daily",
        "08:60|daily",
        "08:00|funday",
        "08:00|Mon",
        "08:00|every1:2026-01-01",
        "08:00|every31:2026-01-01",
        "08:00|every3:2026-02-30",
        "|daily",
        "01:00,02:00,03:00,04:00,05:00,06:00,07:00|daily",
    ],
)
def test_malformed_rule_text_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        Rule.from_text(text)


def test_equal_rules_are_equal_and_hash_equal_however_built() -> None:
    a = Rule((time(21, 30), time(8, 0), time(8, 0)), WeekdaySet(frozenset(range(7))))
    b = Rule((time(8, 0), time(21, 30)))
    assert a == b
    assert {a: "x"}[b] == "x"
    assert a.times == (time(8, 0), time(21, 30))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rule(()),
        lambda: Rule(tuple(time(h, 0) for h in range(7))),
        lambda: Rule((time(8, 0, 30),)),
        lambda: Rule((time(8, 0, tzinfo=UTC),)),
        lambda: WeekdaySet(frozenset()),
        lambda: WeekdaySet(frozenset({7})),
        lambda: EveryNDays(1, TODAY),
        lambda: EveryNDays(31, TODAY),
    ],
)
def test_invalid_rules_cannot_be_built(build: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("command", "phrase"),
    [
        ("sunscreen 08:30 daily", "every day at 08:30"),
        ("moisturize 08:00,21:30 weekdays", "weekdays at 08:00 and 21:30"),
        ("exfoliate 21:00 mon,thu", "Mon and Thu at 21:00"),
        ("exfoliate 21:00 every 3 days", "every 3 days at 21:00"),
        ("exfoliate 21:00 every other day", "every other day at 21:00"),
        ("mask 10:00 weekends", "weekends at 10:00"),
        ("mask 10:00 sunday", "every Sun at 10:00"),
        ("water 8am,12pm,6pm mon,wed,fri", "Mon, Wed and Fri at 08:00, 12:00 and 18:00"),
    ],
)
def test_describe_gives_a_short_english_phrase(command: str, phrase: str) -> None:
    assert describe(parse_remind(command, today=TODAY).rule) == phrase


@pytest.mark.parametrize(
    ("command", "per_week"),
    [
        ("sunscreen 08:30 daily", 7.0),
        ("moisturize 08:00,21:30 weekdays", 10.0),
        ("exfoliate 21:00 mon,thu", 2.0),
        ("exfoliate 21:00 mon,wed,fri,sun", 4.0),
        ("exfoliate 21:00 every 3 days", 7 / 3),
        ("exfoliate 21:00 every other day", 3.5),
    ],
)
def test_times_per_week_counts_average_weekly_occurrences(command: str, per_week: float) -> None:
    assert times_per_week(parse_remind(command, today=TODAY).rule) == pytest.approx(per_week)


def test_exfoliating_every_other_day_is_more_than_three_times_a_week() -> None:
    assert times_per_week(parse_remind("exfoliate 21:00 every other day", today=TODAY).rule) > 3
    assert times_per_week(parse_remind("exfoliate 21:00 every 3 days", today=TODAY).rule) <= 3


# --------------------------------------------------------------------------- next occurrence


def test_next_occurrence_is_aware_utc_in_the_users_wall_clock() -> None:
    nxt = next_occurrence(daily(time(8, 30)), BERLIN, utc(2026, 11, 26, 12, 0))
    assert nxt.tzinfo is UTC
    assert nxt == at(BERLIN, 2026, 11, 27, 8, 30)


def test_after_may_be_given_in_any_zone() -> None:
    after = at(NEW_YORK, 2026, 11, 26, 1, 0)  # 07:00 Berlin
    assert next_occurrence(daily(time(8, 30)), BERLIN, after) == at(BERLIN, 2026, 11, 26, 8, 30)


def test_next_occurrence_is_strictly_after_an_exact_occurrence_instant() -> None:
    rule = daily(time(8, 30))
    occurrence = at(BERLIN, 2026, 11, 26, 8, 30)
    assert next_occurrence(rule, BERLIN, occurrence) == at(BERLIN, 2026, 11, 27, 8, 30)
    just_before = occurrence - timedelta(microseconds=1)
    assert next_occurrence(rule, BERLIN, just_before) == occurrence


def test_next_occurrence_rejects_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_occurrence(daily(time(8, 30)), BERLIN, datetime(2026, 11, 26, 12, 0))  # noqa: DTZ001


def test_several_times_on_one_day_fire_in_order() -> None:
    rule = Rule((time(8, 0), time(21, 30)))
    after = at(BERLIN, 2026, 11, 26, 9, 0)
    assert local_walls(
        occurrences_between(rule, BERLIN, after, after + timedelta(days=1)), BERLIN
    ) == [
        "2026-11-26 21:30 +0100",
        "2026-11-27 08:00 +0100",
    ]


def test_berlin_spring_forward_nonexistent_time_fires_at_three_cest() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    rule = daily(time(2, 30))
    got = occurrences_between(rule, BERLIN, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert got == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert local_walls(got, BERLIN) == [
        "2026-03-28 02:30 +0100",
        "2026-03-29 03:00 +0200",
        "2026-03-30 02:30 +0200",
    ]


def test_berlin_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    rule = daily(time(2, 30))
    got = occurrences_between(rule, BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # (Across zones, PEP 495 makes == false for an ambiguous time, so compare in UTC.)
    assert got[0] == at(BERLIN, 2026, 10, 25, 2, 30, fold=0).astimezone(UTC)
    assert next_occurrence(rule, BERLIN, got[0]) == got[1]


def test_after_inside_the_repeated_hour_waits_for_the_next_day() -> None:
    second_pass = at(BERLIN, 2026, 10, 25, 2, 10, fold=1)  # 01:10 UTC
    assert next_occurrence(daily(time(2, 30)), BERLIN, second_pass) == utc(2026, 10, 26, 1, 30)


def test_berlin_wall_clock_time_is_kept_across_both_switches() -> None:
    rule = daily(time(8, 30))
    spring = occurrences_between(rule, BERLIN, utc(2026, 3, 27), utc(2026, 3, 31))
    assert [o.astimezone(BERLIN).time() for o in spring] == [time(8, 30)] * 4
    assert [o.hour for o in spring] == [7, 7, 6, 6]  # UTC moves by an hour
    autumn = occurrences_between(rule, BERLIN, utc(2026, 10, 23), utc(2026, 10, 27))
    assert [o.astimezone(BERLIN).time() for o in autumn] == [time(8, 30)] * 4
    assert [o.hour for o in autumn] == [6, 6, 7, 7]


def test_new_york_spring_forward_and_fall_back() -> None:
    rule = daily(time(2, 30))
    spring = occurrences_between(rule, NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert local_walls(spring, NEW_YORK) == ["2026-03-08 03:00 -0400", "2026-03-09 02:30 -0400"]
    repeated = daily(time(1, 30))
    autumn = occurrences_between(repeated, NEW_YORK, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert autumn == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert local_walls(autumn, NEW_YORK) == ["2026-11-01 01:30 -0400", "2026-11-02 01:30 -0500"]


def test_sydney_southern_hemisphere_switches() -> None:
    # 2026-04-05 03:00 AEDT falls back to 02:00 AEST; 2026-10-04 02:00 AEST jumps to 03:00.
    rule = daily(time(2, 30))
    april = occurrences_between(rule, SYDNEY, utc(2026, 4, 3, 12), utc(2026, 4, 5, 12))
    assert local_walls(april, SYDNEY) == ["2026-04-04 02:30 +1100", "2026-04-05 02:30 +1100"]
    assert april[1] == utc(2026, 4, 4, 15, 30)
    october = occurrences_between(rule, SYDNEY, utc(2026, 10, 2, 12), utc(2026, 10, 4, 12))
    assert local_walls(october, SYDNEY) == ["2026-10-03 02:30 +1000", "2026-10-04 03:00 +1100"]
    assert october[1] == utc(2026, 10, 3, 16, 0)
    morning = occurrences_between(daily(time(8, 30)), SYDNEY, utc(2026, 4, 3), utc(2026, 4, 6))
    assert [o.astimezone(SYDNEY).time() for o in morning] == [time(8, 30)] * 3


def test_kolkata_has_no_dst_so_the_utc_instant_never_moves() -> None:
    got = occurrences_between(daily(time(8, 30)), KOLKATA, utc(2026, 3, 27), utc(2026, 3, 31))
    got += occurrences_between(daily(time(8, 30)), KOLKATA, utc(2026, 10, 23), utc(2026, 10, 27))
    assert {(o.hour, o.minute) for o in got} == {(3, 0)}
    assert len(got) == 8


@pytest.mark.parametrize(("tz", "utc_hour", "utc_minute"), [(PLUS_0530, 3, 0), (MINUS_3, 11, 30)])
def test_fixed_offset_zones_fire_at_the_same_utc_time_all_year(
    tz: timezone, utc_hour: int, utc_minute: int
) -> None:
    rule = daily(time(8, 30))
    for month in (1, 3, 4, 10, 11):
        nxt = next_occurrence(rule, tz, utc(2026, month, 15, 12))
        assert (nxt.day, nxt.hour, nxt.minute) == (16, utc_hour, utc_minute)


def test_weekdays_skip_the_weekend() -> None:
    rule = Rule((time(8, 30),), WEEKDAYS)
    friday_after = at(BERLIN, 2026, 11, 27, 9, 0)
    assert next_occurrence(rule, BERLIN, friday_after) == at(BERLIN, 2026, 11, 30, 8, 30)


def test_weekends_skip_the_working_week() -> None:
    rule = Rule((time(10, 0),), WEEKENDS)
    got = occurrences_between(rule, BERLIN, at(BERLIN, 2026, 11, 23), at(BERLIN, 2026, 12, 7))
    assert [o.astimezone(BERLIN).strftime("%a %d") for o in got] == [
        "Sat 28",
        "Sun 29",
        "Sat 05",
        "Sun 06",
    ]


def test_day_sets_fire_only_on_their_days() -> None:
    rule = parse_remind("exfoliate 21:00 mon,thu", today=TODAY).rule
    got = occurrences_between(rule, BERLIN, at(BERLIN, 2026, 11, 23), at(BERLIN, 2026, 12, 7))
    assert [o.astimezone(BERLIN).strftime("%a %d %H:%M") for o in got] == [
        "Mon 23 21:00",
        "Thu 26 21:00",
        "Mon 30 21:00",
        "Thu 03 21:00",
    ]


def test_two_times_that_meet_in_the_spring_gap_fire_once() -> None:
    rule = Rule((time(2, 30), time(3, 0)))
    got = occurrences_between(rule, BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert got == [utc(2026, 3, 29, 1, 0)]


# --------------------------------------------------------------------------- every N days


def test_every_n_days_steps_calendar_days_across_a_month_end() -> None:
    rule = Rule((time(21, 0),), EveryNDays(3, date(2026, 11, 26)))
    got = occurrences_between(rule, BERLIN, utc(2026, 11, 1), utc(2026, 12, 9))
    assert local_walls(got, BERLIN) == [
        "2026-11-26 21:00 +0100",
        "2026-11-29 21:00 +0100",
        "2026-12-02 21:00 +0100",
        "2026-12-05 21:00 +0100",
        "2026-12-08 21:00 +0100",
    ]


def test_every_n_days_steps_across_a_year_end() -> None:
    rule = Rule((time(21, 0),), EveryNDays(3, date(2026, 12, 28)))
    got = occurrences_between(rule, NEW_YORK, utc(2026, 12, 27), utc(2027, 1, 8))
    assert [o.astimezone(NEW_YORK).date() for o in got] == [
        date(2026, 12, 28),
        date(2026, 12, 31),
        date(2027, 1, 3),
        date(2027, 1, 6),
    ]


def test_every_n_days_keeps_wall_clock_time_across_dst() -> None:
    rule = Rule((time(8, 30),), EveryNDays(3, date(2026, 3, 26)))
    got = occurrences_between(rule, BERLIN, utc(2026, 3, 25), utc(2026, 4, 2))
    assert local_walls(got, BERLIN) == [
        "2026-03-26 08:30 +0100",
        "2026-03-29 08:30 +0200",
        "2026-04-01 08:30 +0200",
    ]
    assert got[1] - got[0] == timedelta(days=3, hours=-1)  # not 3 × 24 h


def test_every_n_days_applies_the_dst_policy_on_switch_days() -> None:
    spring = Rule((time(2, 30),), EveryNDays(3, date(2026, 3, 26)))
    got = occurrences_between(spring, BERLIN, utc(2026, 3, 25), utc(2026, 4, 2))
    assert local_walls(got, BERLIN) == [
        "2026-03-26 02:30 +0100",
        "2026-03-29 03:00 +0200",  # not skipped, unlike CalendarIntervalTrigger
        "2026-04-01 02:30 +0200",
    ]
    autumn = Rule((time(2, 30),), EveryNDays(3, date(2026, 10, 22)))
    got = occurrences_between(autumn, BERLIN, utc(2026, 10, 24), utc(2026, 10, 27))
    assert got == [utc(2026, 10, 25, 0, 30)]


def test_every_n_days_before_the_anchor_starts_at_the_anchor() -> None:
    rule = Rule((time(21, 0),), EveryNDays(5, date(2027, 2, 1)))
    assert next_occurrence(rule, BERLIN, utc(2026, 11, 26)) == at(BERLIN, 2027, 2, 1, 21, 0)


def test_every_n_days_far_from_its_anchor_stays_aligned() -> None:
    anchor = date(2020, 1, 1)
    rule = Rule((time(21, 0),), EveryNDays(7, anchor))
    nxt = next_occurrence(rule, BERLIN, utc(2026, 11, 26, 12))
    local = nxt.astimezone(BERLIN)
    assert (local.date() - anchor).days % 7 == 0
    assert local.time() == time(21, 0)
    assert timedelta(0) < nxt - utc(2026, 11, 26, 12) <= timedelta(days=7)


def test_every_n_days_is_strictly_after_an_exact_occurrence() -> None:
    rule = Rule((time(21, 0),), EveryNDays(3, date(2026, 11, 26)))
    occurrence = at(BERLIN, 2026, 11, 26, 21, 0)
    assert next_occurrence(rule, BERLIN, occurrence) == at(BERLIN, 2026, 11, 29, 21, 0)


# --------------------------------------------------------------------------- occurrences_between


def test_occurrences_between_excludes_start_and_includes_end() -> None:
    rule = daily(time(8, 30))
    start = at(BERLIN, 2026, 11, 26, 8, 30)
    end = at(BERLIN, 2026, 11, 28, 8, 30)
    assert occurrences_between(rule, BERLIN, start, end) == [
        at(BERLIN, 2026, 11, 27, 8, 30),
        end,
    ]


def test_occurrences_between_is_empty_for_an_empty_range() -> None:
    start = utc(2026, 11, 26)
    assert occurrences_between(daily(time(8, 30)), BERLIN, start, start) == []
    assert occurrences_between(daily(time(8, 30)), BERLIN, start, start - timedelta(days=1)) == []


def test_occurrences_between_returns_at_most_limit_earliest() -> None:
    rule = Rule(tuple(time(h, 0) for h in (7, 9, 11, 13, 15, 21)))
    got = occurrences_between(rule, BERLIN, utc(2026, 1, 1), utc(2027, 1, 1), limit=10)
    assert len(got) == 10
    assert got[0] == at(BERLIN, 2026, 1, 1, 7, 0)


def test_occurrences_between_counts_a_whole_year_quickly_and_in_order() -> None:
    rule = Rule(tuple(time(h, 0) for h in (7, 9, 11, 13, 15, 21)))
    got = occurrences_between(rule, BERLIN, utc(2026, 1, 1), utc(2027, 1, 1), limit=5000)
    assert len(got) == 365 * 6
    assert got == sorted(set(got))
    assert all(o.tzinfo is UTC for o in got)


def test_occurrences_between_agrees_with_chained_next_occurrence() -> None:
    rule = Rule((time(2, 30), time(21, 0)), WeekdaySet(frozenset({0, 3, 6})))
    start, end = utc(2026, 3, 1), utc(2026, 11, 30)
    chained: list[datetime] = []
    cursor = start
    while (cursor := next_occurrence(rule, BERLIN, cursor)) <= end:
        chained.append(cursor)
    assert occurrences_between(rule, BERLIN, start, end) == chained


ORACLE_ZONES = [
    BERLIN,
    NEW_YORK,
    SYDNEY,
    KOLKATA,
    ZoneInfo("America/Santiago"),  # switches at midnight
    ZoneInfo("America/Havana"),  # springs forward at midnight
    ZoneInfo("Africa/Cairo"),  # springs forward at midnight
    ZoneInfo("Asia/Beirut"),  # switches at midnight
    ZoneInfo("Australia/Lord_Howe"),  # 30-minute DST
    ZoneInfo("Europe/Dublin"),  # "negative" DST in the tz database
    ZoneInfo("America/St_Johns"),  # -03:30 / -02:30
]
ORACLE_RULES = [
    Rule(tuple(time(h, m) for h, m in ((0, 0), (0, 30), (1, 0), (2, 0), (2, 30), (3, 0)))),
    Rule(
        tuple(time(h, m) for h, m in ((0, 59), (1, 30), (8, 30), (23, 30), (23, 59))),
        WeekdaySet(frozenset({0, 6})),
    ),
    Rule((time(0, 0), time(2, 30), time(23, 59)), EveryNDays(3, date(2025, 12, 30))),
]


def _fires_on(rule: Rule, day: date) -> bool:
    if isinstance(rule.days, EveryNDays):
        return (day - rule.days.anchor).days % rule.days.n == 0
    return day.weekday() in rule.days.days


def _oracle(rule: Rule, tz: tzinfo, year: int) -> list[datetime]:
    """The DST policy stated independently, by brute force: walk every local date; for a
    wall time that does not exist, step one minute at a time until one does; take fold=0."""
    out: list[datetime] = []
    day = date(year, 1, 1)
    while day.year == year:
        if _fires_on(rule, day):
            for t in rule.times:
                wall = datetime.combine(day, t)
                while True:
                    candidate = wall.replace(tzinfo=tz)
                    if candidate.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
                        break
                    wall += timedelta(minutes=1)
                instant = candidate.astimezone(UTC)
                if not out or instant > out[-1]:
                    out.append(instant)
        day += timedelta(days=1)
    return out


def _switch_instants(tz: tzinfo, year: int) -> list[datetime]:
    hours = [datetime(year, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(365 * 24)]
    return [
        b
        for a, b in itertools.pairwise(hours)
        if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset()
    ]


@pytest.mark.parametrize("tz", ORACLE_ZONES, ids=str)
@pytest.mark.parametrize("rule", ORACLE_RULES, ids=lambda r: r.to_text())
def test_a_whole_year_matches_the_stated_dst_policy(rule: Rule, tz: ZoneInfo) -> None:
    start = datetime(2026, 1, 1, tzinfo=tz) - timedelta(microseconds=1)
    end = datetime(2027, 1, 1, tzinfo=tz) - timedelta(microseconds=1)
    assert occurrences_between(rule, tz, start, end, limit=5000) == _oracle(rule, tz, 2026)


@pytest.mark.parametrize("tz", [z for z in ORACLE_ZONES if z is not KOLKATA], ids=str)
def test_next_occurrence_from_any_instant_around_a_switch_matches_the_policy(
    tz: ZoneInfo,
) -> None:
    switches = _switch_instants(tz, 2026)
    assert switches, "the zone should have DST in 2026"
    for rule in ORACLE_RULES[0], ORACLE_RULES[2]:
        expected = _oracle(rule, tz, 2026)
        for switch in switches:
            after = switch - timedelta(hours=26)
            while after < switch + timedelta(hours=26):
                want = next(o for o in expected if o > after)
                assert next_occurrence(rule, tz, after) == want, (rule, after)
                after += timedelta(minutes=17)


# --------------------------------------------------------------------------- quiet hours

OVERNIGHT = QuietHours(time(22, 0), time(7, 0))


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        (time(21, 59), False),
        (time(22, 0), True),
        (time(23, 30), True),
        (time(0, 0), True),
        (time(3, 0), True),
        (time(6, 59, 59), True),
        (time(7, 0), False),
        (time(12, 0), False),
    ],
)
def test_quiet_hours_across_midnight_contain_the_night(local: time, inside: bool) -> None:
    assert OVERNIGHT.contains(local) is inside


def test_quiet_hours_within_a_day() -> None:
    nap = QuietHours(time(13, 0), time(15, 0))
    assert not nap.crosses_midnight
    assert [nap.contains(time(h, 0)) for h in (12, 13, 14, 15)] == [False, True, True, False]


def test_quiet_hours_with_equal_start_and_end_are_rejected() -> None:
    with pytest.raises(ValueError, match="different"):
        QuietHours(time(22, 0), time(22, 0))


@pytest.mark.parametrize(
    "text",
    ["22:00-07:00", "22-7", "10pm-7am", "10 pm - 7 am", "22:00 – 07:00", "22:00 to 07:00"],
)
def test_parse_quiet_reads_common_forms(text: str) -> None:
    assert parse_quiet(text) == OVERNIGHT


@pytest.mark.parametrize("text", ["off", "OFF", " none ", "no"])
def test_parse_quiet_off_means_no_quiet_hours(text: str) -> None:
    assert parse_quiet(text) is None


def test_parse_quiet_reads_24_as_midnight() -> None:
    assert parse_quiet("13-24") == QuietHours(time(13, 0), time(0, 0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Send quiet hours like “22:00-07:00”, or “off”."),
        ("22", "Send quiet hours like “22:00-07:00”, or “off”."),
        ("late", "Send quiet hours like “22:00-07:00”, or “off”."),
        ("25-7", "I couldn't read “25” as a time."),
        ("22:00-7:61", "I couldn't read “7:61” as a time."),
        ("22-22", "Quiet hours need different start and end times."),
        ("10pm-22", "Quiet hours need different start and end times."),
    ],
)
def test_parse_quiet_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_quiet(text)
    assert caught.value.message == message


def test_quiet_hours_text_round_trips_and_describes() -> None:
    assert QuietHours.from_text(OVERNIGHT.to_text()) == OVERNIGHT
    assert OVERNIGHT.to_text() == "22:00-07:00"
    assert describe_quiet(OVERNIGHT) == "from 22:00 to 07:00"
    assert describe_quiet(None) == "off"
    with pytest.raises(ValueError, match="malformed"):
        QuietHours.from_text("22-7")


def test_defer_before_midnight_moves_to_next_morning() -> None:
    when = at(BERLIN, 2026, 11, 26, 23, 15)
    assert defer_out_of_quiet(when, OVERNIGHT, BERLIN) == at(BERLIN, 2026, 11, 27, 7, 0)


def test_defer_after_midnight_moves_to_the_same_morning() -> None:
    when = at(BERLIN, 2026, 11, 27, 2, 0)
    assert defer_out_of_quiet(when, OVERNIGHT, BERLIN) == at(BERLIN, 2026, 11, 27, 7, 0)


def test_defer_returns_aware_utc() -> None:
    deferred = defer_out_of_quiet(at(BERLIN, 2026, 11, 26, 23, 15), OVERNIGHT, BERLIN)
    assert deferred.tzinfo is UTC


@pytest.mark.parametrize(
    "when",
    [
        at(BERLIN, 2026, 11, 26, 7, 0),
        at(BERLIN, 2026, 11, 26, 12, 0),
        at(BERLIN, 2026, 11, 26, 21, 59),
    ],
)
def test_defer_leaves_times_outside_quiet_hours_unchanged(when: datetime) -> None:
    assert defer_out_of_quiet(when, OVERNIGHT, BERLIN) is when


def test_defer_without_quiet_hours_is_a_no_op() -> None:
    when = at(BERLIN, 2026, 11, 26, 23, 0)
    assert defer_out_of_quiet(when, None, BERLIN) is when


def test_defer_uses_the_users_zone_not_the_datetimes_zone() -> None:
    when = utc(2026, 11, 26, 22, 30)  # 23:30 in Berlin, 17:30 in New York
    assert defer_out_of_quiet(when, OVERNIGHT, BERLIN) == at(BERLIN, 2026, 11, 27, 7, 0)
    assert defer_out_of_quiet(when, OVERNIGHT, NEW_YORK) is when


def test_defer_across_the_spring_forward_night_uses_the_new_offset() -> None:
    when = at(BERLIN, 2026, 3, 28, 23, 0)
    deferred = defer_out_of_quiet(when, OVERNIGHT, BERLIN)
    assert deferred == utc(2026, 3, 29, 5, 0)  # 07:00 CEST
    assert deferred - when.astimezone(UTC) == timedelta(hours=7)


def test_defer_across_the_fall_back_night_uses_the_new_offset() -> None:
    when = at(BERLIN, 2026, 10, 24, 23, 0)
    deferred = defer_out_of_quiet(when, OVERNIGHT, BERLIN)
    assert deferred == utc(2026, 10, 25, 6, 0)  # 07:00 CET
    assert deferred - when.astimezone(UTC) == timedelta(hours=9)


def test_defer_to_a_nonexistent_end_time_moves_to_the_end_of_the_gap() -> None:
    quiet = QuietHours(time(23, 0), time(2, 30))
    deferred = defer_out_of_quiet(at(BERLIN, 2026, 3, 29, 1, 0), quiet, BERLIN)
    assert local_walls([deferred], BERLIN) == ["2026-03-29 03:00 +0200"]


def test_defer_in_the_repeated_hour_ends_at_the_second_reading_of_the_end() -> None:
    quiet = QuietHours(time(22, 0), time(2, 30))
    first_pass = at(BERLIN, 2026, 10, 25, 2, 10, fold=0)
    assert defer_out_of_quiet(first_pass, quiet, BERLIN) == utc(2026, 10, 25, 0, 30)
    second_pass = at(BERLIN, 2026, 10, 25, 2, 10, fold=1)
    assert defer_out_of_quiet(second_pass, quiet, BERLIN) == utc(2026, 10, 25, 1, 30)


# --------------------------------------------------------------------------- snooze


def test_snooze_adds_real_elapsed_minutes() -> None:
    now = at(BERLIN, 2026, 11, 26, 12, 0)
    assert snooze_until(now, 30, OVERNIGHT, BERLIN) == at(BERLIN, 2026, 11, 26, 12, 30)


def test_snooze_is_a_duration_even_across_the_spring_gap() -> None:
    now = at(BERLIN, 2026, 3, 29, 1, 30)  # CET
    later = snooze_until(now, 60, None, BERLIN)
    assert later - now == timedelta(hours=1)
    assert later.astimezone(BERLIN).strftime("%H:%M %z") == "03:30 +0200"


def test_snooze_into_quiet_hours_is_deferred_to_their_end() -> None:
    now = at(BERLIN, 2026, 11, 26, 21, 50)
    assert snooze_until(now, 30, OVERNIGHT, BERLIN) == at(BERLIN, 2026, 11, 27, 7, 0)


def test_snooze_during_quiet_hours_in_a_fixed_offset_zone() -> None:
    now = at(PLUS_0530, 2026, 11, 26, 23, 0)
    assert snooze_until(now, 10, OVERNIGHT, PLUS_0530) == at(PLUS_0530, 2026, 11, 27, 7, 0)


@pytest.mark.parametrize("minutes", [0, -5, 7 * 24 * 60 + 1])
def test_snooze_rejects_nonsense_durations(minutes: int) -> None:
    with pytest.raises(ValueError, match="minutes"):
        snooze_until(utc(2026, 11, 26), minutes, None, BERLIN)


# --------------------------------------------------------------------------- isolation


def test_policy_modules_import_nothing_from_telegram_or_the_database() -> None:
    code = (
        "import sys, miliabot_tg.schedule, miliabot_tg.timezones\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'telegram', 'sqlmodel', 'sqlalchemy', 'psycopg', 'alembic'}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
