"""Progress policy: what each outcome counts as, 7- and 30-day counts, forgiving streaks."""

import asyncio
import struct
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta

import pytest

from miliabot_tg import charts
from miliabot_tg import progress_texts as pt
from miliabot_tg.progress import (
    Mark,
    Progress,
    Record,
    Tally,
    Tracked,
    day_mark,
    mark_of,
    progress,
    reminder_progress,
    streaks,
)
from miliabot_tg.schedule import Rule, occurrences_between
from miliabot_tg.timezones import zone_from_key

BERLIN = zone_from_key("Europe/Berlin")
TOKYO = zone_from_key("Asia/Tokyo")
NEW_YORK = zone_from_key("America/New_York")
SUN = Tracked(1, "sunscreen", "sunscreen", paused=False)
TODAY = date(2026, 11, 26)


def _local(day: date, hh: int = 8, mm: int = 30, zone: object = BERLIN) -> datetime:
    assert zone is not None
    return datetime.combine(day, time(hh, mm), tzinfo=zone).astimezone(UTC)  # type: ignore[arg-type]


def _rec(day: date, status: str, *, snoozes: int = 0, hh: int = 8, rid: int = 1) -> Record:
    return Record(rid, _local(day, hh), status, snoozes)


def _days(marks: str, last: date = TODAY) -> dict[date, Mark]:
    """A run of day marks ending on `last`: d done, s snoozed-done, k skipped, m missed,
    o open, '.' nothing due."""
    codes = {"d": Mark.DONE, "s": Mark.SNOOZED_DONE, "k": Mark.SKIPPED, "m": Mark.MISSED}
    codes["o"] = Mark.OPEN
    first = last - timedelta(days=len(marks) - 1)
    return {first + timedelta(days=i): codes[c] for i, c in enumerate(marks) if c != "."}


# --- what one occurrence counts as ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "snoozes", "day", "expected"),
    [
        ("done", 0, TODAY, Mark.DONE),
        ("done", 2, TODAY, Mark.SNOOZED_DONE),
        ("skipped", 0, TODAY, Mark.SKIPPED),
        ("missed", 0, TODAY, Mark.MISSED),
        ("sent", 0, TODAY - timedelta(days=1), Mark.MISSED),  # unanswered, day over
        ("sent", 1, TODAY - timedelta(days=1), Mark.MISSED),  # snoozed, then unanswered
        ("sent", 0, TODAY, Mark.OPEN),  # there is still time today
        ("pending", 0, TODAY, Mark.OPEN),
        ("snoozed", 1, TODAY, Mark.OPEN),
        ("sending", 0, TODAY, Mark.OPEN),
        ("failed", 0, TODAY - timedelta(days=3), Mark.NOTHING),  # never reached the user
    ],
)
def test_each_outcome_counts_as_the_policy_says(
    status: str, snoozes: int, day: date, expected: Mark
) -> None:
    assert mark_of(_rec(day, status, snoozes=snoozes), day, TODAY) == expected


def test_a_day_is_done_only_when_every_occurrence_is() -> None:
    assert day_mark([Mark.DONE, Mark.DONE]) == Mark.DONE
    assert day_mark([Mark.DONE, Mark.SNOOZED_DONE]) == Mark.SNOOZED_DONE
    assert day_mark([Mark.DONE, Mark.MISSED]) == Mark.MISSED
    assert day_mark([Mark.SKIPPED, Mark.DONE]) == Mark.SKIPPED
    assert day_mark([Mark.DONE, Mark.OPEN]) == Mark.OPEN
    assert day_mark([Mark.NOTHING]) == Mark.NOTHING
    assert day_mark([]) == Mark.NOTHING


# --- streaks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marks", "current", "best"),
    [
        ("", 0, 0),
        ("ddd", 3, 3),
        ("dsd", 3, 3),  # a snooze that ends in Done counts
        ("d.d.d", 3, 3),  # a day with nothing due does not break it
        ("dd.......dd", 4, 4),  # nor does a paused week
        ("dddkd", 1, 3),  # a skip breaks it
        ("dddmdd", 2, 3),  # so does a miss
        ("ddo", 2, 2),  # today, still open, does not break it
        ("dddd..mdd", 2, 4),
        ("dmo", 0, 1),
    ],
)
def test_forgiving_streaks(marks: str, current: int, best: int) -> None:
    assert streaks(_days(marks), TODAY) == (current, best)


def test_future_days_are_not_counted() -> None:
    days = _days("ddd", last=TODAY + timedelta(days=2))
    assert streaks(days, TODAY) == (1, 1)


def test_a_snooze_that_ends_in_done_keeps_the_streak_through_the_engine_statuses() -> None:
    records = [
        _rec(TODAY - timedelta(days=2), "done"),
        _rec(TODAY - timedelta(days=1), "done", snoozes=1),
        _rec(TODAY, "snoozed", snoozes=1),
    ]
    found = reminder_progress(SUN, records, BERLIN, TODAY)
    assert (found.current_streak, found.best_streak) == (2, 2)
    assert found.days[TODAY] == Mark.OPEN
    assert found.week == Tally(done=1, snoozed_done=1)


def test_two_times_a_day_count_as_one_day() -> None:
    records = [
        _rec(TODAY - timedelta(days=1), "done", hh=8),
        _rec(TODAY - timedelta(days=1), "done", hh=21),
        _rec(TODAY, "done", hh=8),
        _rec(TODAY, "sent", hh=21),
    ]
    found = reminder_progress(SUN, records, BERLIN, TODAY)
    assert found.days == {TODAY - timedelta(days=1): Mark.DONE, TODAY: Mark.OPEN}
    assert (found.current_streak, found.best_streak) == (1, 1)
    assert found.week == Tally(done=3)


# --- counts ----------------------------------------------------------------------------------


def test_seven_and_thirty_day_counts_include_today_and_stop_at_their_edges() -> None:
    records = [
        _rec(TODAY, "done"),
        _rec(TODAY - timedelta(days=6), "skipped"),  # the week's first day
        _rec(TODAY - timedelta(days=7), "missed"),  # not this week, but this month
        _rec(TODAY - timedelta(days=8), "sent"),  # unanswered: missed
        _rec(TODAY - timedelta(days=29), "done", snoozes=1),  # the month's first day
        _rec(TODAY - timedelta(days=30), "done"),  # too old for either
        _rec(TODAY - timedelta(days=3), "failed"),  # not counted at all
    ]
    found = reminder_progress(SUN, records, BERLIN, TODAY)
    assert found.week == Tally(done=1, skipped=1)
    assert found.month == Tally(done=1, snoozed_done=1, skipped=1, missed=2)
    assert (found.month.completed, found.month.total) == (2, 5)


def test_progress_keeps_each_reminder_apart_and_knows_when_there_is_no_history() -> None:
    moist = Tracked(2, "moisturize", "moisturize", paused=True)
    now = _local(TODAY, 12)
    empty = progress([SUN, moist], [], BERLIN, now)
    assert not empty.has_history
    only_open = progress([SUN], [_rec(TODAY, "sent")], BERLIN, now)
    assert not only_open.has_history, "a reminder waiting for today's answer is no history"
    found = progress(
        [SUN, moist], [_rec(TODAY, "done"), _rec(TODAY, "skipped", rid=2)], BERLIN, now
    )
    assert found.has_history
    assert [r.reminder.reminder_id for r in found.reminders] == [1, 2]
    assert found.reminders[0].week == Tally(done=1)
    assert found.reminders[1].week == Tally(skipped=1)
    old = progress([SUN], [_rec(TODAY - timedelta(weeks=13), "done")], BERLIN, now)
    assert not old.has_history, "nothing in the chart's 12 weeks"


# --- local days: timezones and daylight saving ----------------------------------------------


def test_days_are_the_users_local_days() -> None:
    # 23:30 UTC on the 25th is the 26th in Tokyo and still the 25th in New York.
    at = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    record = Record(1, at, "done", 0)
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    tokyo = progress([SUN], [record], TOKYO, now)
    new_york = progress([SUN], [record], NEW_YORK, now)
    assert tokyo.today == date(2026, 11, 26) and new_york.today == date(2026, 11, 26)
    assert list(tokyo.reminders[0].days) == [date(2026, 11, 26)]
    assert list(new_york.reminders[0].days) == [date(2026, 11, 25)]


def test_today_is_the_users_today() -> None:
    # 01:00 UTC on the 26th is still the evening of the 25th in New York: its reminder,
    # sent and unanswered, is open there, and over (missed) in Tokyo's afternoon.
    record = Record(1, datetime(2026, 11, 25, 23, 0, tzinfo=UTC), "sent", 0)
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert progress([SUN], [record], NEW_YORK, now).reminders[0].days == {
        date(2026, 11, 25): Mark.OPEN
    }
    tokyo_late = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert progress([SUN], [record], TOKYO, tokyo_late).reminders[0].days == {
        date(2026, 11, 26): Mark.MISSED
    }


@pytest.mark.parametrize(
    ("zone_key", "first", "last"),
    [
        # Spring forward in Berlin (2026-03-29): 02:30 does not exist and fires at 03:00.
        ("Europe/Berlin", date(2026, 3, 26), date(2026, 4, 1)),
        # Fall back in Berlin (2026-10-25) and New York (2026-11-01): 01:30 happens twice.
        ("Europe/Berlin", date(2026, 10, 22), date(2026, 10, 28)),
        ("America/New_York", date(2026, 10, 29), date(2026, 11, 4)),
    ],
)
@pytest.mark.parametrize("at", [time(0, 0), time(1, 30), time(2, 30), time(23, 30)])
def test_a_daily_reminder_done_every_day_across_a_dst_change_is_one_unbroken_streak(
    zone_key: str, first: date, last: date, at: time
) -> None:
    zone = zone_from_key(zone_key)
    start = datetime.combine(first, time(0), tzinfo=zone) - timedelta(minutes=1)
    end = datetime.combine(last, time(23, 59), tzinfo=zone)
    fired = occurrences_between(Rule((at,)), zone, start, end)
    records = [Record(1, t, "done", 0) for t in fired]
    found = reminder_progress(SUN, records, zone, last)
    days = (last - first).days + 1
    assert sorted(found.days) == [first + timedelta(days=i) for i in range(days)], (
        "one local day per occurrence, none doubled or lost at the change"
    )
    assert (found.current_streak, found.best_streak) == (days, days)
    assert found.week.done == 7


# --- the chart -------------------------------------------------------------------------------


def _history(days: int = 84) -> list[Record]:
    marks = ["done", "done", "skipped", "done", "missed", "done", "done"]
    return [
        Record(1, _local(TODAY - timedelta(days=d)), marks[d % 7], int(d % 5 == 0))
        for d in range(days)
    ]


def test_the_calendar_lays_out_twelve_weeks_monday_first_ending_this_week() -> None:
    found = reminder_progress(SUN, _history(), BERLIN, TODAY)
    drawn = charts.panel(found, TODAY, "Sunscreen")
    assert len(drawn.cells) == 7 and all(len(row) == 12 for row in drawn.cells)
    # 2026-11-26 is a Thursday: the last column stops there; later days are not drawn.
    assert drawn.today == (3, 11)
    assert [row[11] for row in drawn.cells][4:] == [-1, -1, -1]
    assert charts.first_monday(TODAY) == date(2026, 9, 7)
    order = list(charts.COLOURS)
    assert drawn.cells[3][11] == order.index(found.days[TODAY])
    labels = charts.week_labels(TODAY)
    assert labels[11] == "23 Nov" and labels[10] == "" and labels[0] == ""


@pytest.mark.parametrize("reminders", [1, 2, 3, 7])
def test_the_chart_is_a_png_for_any_number_of_reminders(reminders: int) -> None:
    tracked = [Tracked(i, "custom", f"thing {i}", paused=False) for i in range(1, reminders + 1)]
    records = [
        Record(r.reminder_id, rec.scheduled_for, rec.status, rec.snoozes)
        for r in tracked
        for rec in _history()
    ]
    found = progress(tracked, records, BERLIN, _local(TODAY, 20))
    png = charts.render(found, [r.label for r in tracked], "Your last 12 weeks")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert 400 <= width <= 1280 and 300 <= height <= 1280, "a phone-sized picture"


def test_labels_are_drawn_as_typed_never_as_math() -> None:
    odd = Tracked(1, "custom", r"$\frac{a}{$ serum $$ 50% \\", paused=False)
    found = progress([odd], _history(), BERLIN, _local(TODAY, 20))
    png = charts.render(found, [odd.label], "Your last 12 weeks")
    assert png.startswith(b"\x89PNG")


def test_the_colours_differ_for_every_outcome_and_the_card_is_not_transparent() -> None:
    shown = [charts.COLOURS[mark] for mark, _ in charts.LEGEND]
    assert len(set(shown)) == len(shown)
    assert charts.CARD.startswith("#") and len(charts.CARD) == 7  # opaque, mid-tone
    lightness = sum(int(charts.CARD[i : i + 2], 16) for i in (1, 3, 5)) / (3 * 255)
    assert 0.2 < lightness < 0.6


async def test_renders_are_limited_and_run_off_the_event_loop() -> None:
    found = progress([SUN], _history(), BERLIN, _local(TODAY, 20))
    running = 0
    most = 0
    original = charts.render

    def counting(*args: object) -> bytes:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return original(*args)  # type: ignore[arg-type]
        finally:
            running -= 1

    charts_render, charts.render = charts.render, counting  # type: ignore[assignment]
    try:
        results = await asyncio.gather(
            *(charts.render_png(found, ["Sunscreen"], "t") for _ in range(5))
        )
    finally:
        charts.render = charts_render
    assert all(r.startswith(b"\x89PNG") for r in results)
    assert most <= charts.MAX_RENDERS


def test_starting_the_bot_does_not_import_matplotlib() -> None:
    code = "import sys, miliabot_tg.app; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# --- the caption -----------------------------------------------------------------------------


@pytest.mark.parametrize("weekly", [False, True])
def test_the_caption_fits_telegrams_1024_characters_however_many_reminders(weekly: bool) -> None:
    tracked = [Tracked(i, "custom", "<&>" * 21 + str(i), paused=i % 2 == 0) for i in range(50)]
    records = [
        Record(r.reminder_id, rec.scheduled_for, rec.status, 0)
        for r in tracked
        for rec in _history(10)
    ]
    found = progress(tracked, records, BERLIN, _local(TODAY, 20))
    text = pt.caption(found, weekly=weekly)
    assert len(text) <= pt.MAX_CAPTION
    assert "…and " in text and "more" in text
    assert "<&>" not in text and "&lt;&amp;&gt;" in text, "labels are escaped"
    shown = text.count("\n\n") - (1 if weekly else 0)
    assert 2 <= shown < 50


def test_the_caption_says_streaks_and_counts_in_words() -> None:
    found = reminder_progress(SUN, _history(30), BERLIN, TODAY)
    block = pt.caption(Progress(TODAY, (found,)))
    assert block.startswith("📈 <b>Your last 12 weeks</b>\n\n☀️ <b>Sunscreen</b>: ")
    assert "Sunscreen</b>: 🔥 2 days in a row (best 4)\n" in block
    assert "7 days: 5/7 done, 2 after a snooze, 1 skipped, 1 missed · " in block
    assert "30 days: 22/30 done, 5 after a snooze, 4 skipped, 4 missed" in block
