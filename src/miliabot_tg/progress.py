"""Progress: what became of each reminder, day by day, and streaks. Pure policy, no Telegram.

Days are the user's local calendar days, in their timezone at the time of asking (an
occurrence belongs to the local date its scheduled time falls on).

What an occurrence counts as:

* **done**: the user pressed Done; **snoozed then done** when they snoozed it first;
* **skipped**: the user pressed Skip;
* **missed**: sent and never answered (once its day is over), or never sent because the
  bot was down for longer than the grace window;
* **open**: still waiting (pending, snoozed, or sent today and not answered yet);
* a send Telegram refused for good (the user had blocked the bot) counts as nothing.

Streaks are forgiving, the way people are:

* a day counts when every occurrence of the reminder that day was done, snoozes included;
* a day with nothing due (not a reminder day, the reminder or everything paused, the
  bot unable to deliver) neither counts nor breaks the streak, so a paused reminder's
  streak waits for it;
* today never breaks a streak while something is still open: it counts once it is done;
* a skipped or unanswered occurrence breaks it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Final

from miliabot_tg.models import OccurrenceStatus

WEEK_DAYS: Final = 7
MONTH_DAYS: Final = 30
CHART_WEEKS: Final = 12  # what the calendar chart shows


class Mark(StrEnum):
    """What one occurrence, or one day of one reminder, came to."""

    DONE = "done"
    SNOOZED_DONE = "snoozed_done"
    SKIPPED = "skipped"
    MISSED = "missed"
    OPEN = "open"  # still waiting for the user (or for its time)
    NOTHING = "nothing"  # nothing due, or nothing we could deliver


@dataclass(frozen=True)
class Record:
    """One occurrence, as history keeps it."""

    reminder_id: int
    scheduled_for: datetime  # aware
    status: str
    snoozes: int


@dataclass(frozen=True)
class Tracked:
    """A reminder whose progress is shown."""

    reminder_id: int
    kind: str
    label: str
    paused: bool


@dataclass(frozen=True)
class Tally:
    """Counts of outcomes over a period."""

    done: int = 0  # done without a snooze
    snoozed_done: int = 0
    skipped: int = 0
    missed: int = 0

    @property
    def completed(self) -> int:
        """Done, with or without a snooze first."""
        return self.done + self.snoozed_done

    @property
    def total(self) -> int:
        """Every occurrence with a final outcome."""
        return self.completed + self.skipped + self.missed


@dataclass(frozen=True)
class ReminderProgress:
    """One reminder's record: recent counts, streaks, and a mark for each local day."""

    reminder: Tracked
    week: Tally
    month: Tally
    current_streak: int
    best_streak: int
    days: dict[date, Mark]


@dataclass(frozen=True)
class Progress:
    """A user's progress on `today` (their local date)."""

    today: date
    reminders: tuple[ReminderProgress, ...]

    @property
    def has_history(self) -> bool:
        """Whether any outcome falls in the chart's weeks (else the chart would be empty)."""
        since = self.today - timedelta(weeks=CHART_WEEKS)
        return any(
            mark != Mark.OPEN and day > since
            for reminder in self.reminders
            for day, mark in reminder.days.items()
        )


def mark_of(record: Record, day: date, today: date) -> Mark:
    """What one occurrence on local `day` counts as, seen on local date `today`."""
    status = record.status
    if status == OccurrenceStatus.DONE:
        return Mark.SNOOZED_DONE if record.snoozes > 0 else Mark.DONE
    if status == OccurrenceStatus.SKIPPED:
        return Mark.SKIPPED
    if status == OccurrenceStatus.SENT:
        # Unanswered: the user may still press Done until their day is over.
        return Mark.OPEN if day >= today else Mark.MISSED
    if status == OccurrenceStatus.MISSED:
        # Never sent (the bot was down) or sent and then given up on: either way not done.
        return Mark.MISSED
    if status == OccurrenceStatus.FAILED:
        return Mark.NOTHING
    return Mark.OPEN  # pending, sending, snoozed


def day_mark(marks: Iterable[Mark]) -> Mark:
    """One day of one reminder, from its occurrences' marks (see the module's policy)."""
    found = set(marks) - {Mark.NOTHING}
    if not found:
        return Mark.NOTHING
    if Mark.MISSED in found:
        return Mark.MISSED
    if Mark.SKIPPED in found:
        return Mark.SKIPPED
    if Mark.OPEN in found:
        return Mark.OPEN
    return Mark.SNOOZED_DONE if Mark.SNOOZED_DONE in found else Mark.DONE


def streaks(days: dict[date, Mark], today: date) -> tuple[int, int]:
    """Return (current, best) streaks in days, under the forgiving rules above."""
    current = best = 0
    for day in sorted(d for d in days if d <= today):
        mark = days[day]
        if mark in (Mark.DONE, Mark.SNOOZED_DONE):
            current += 1
            best = max(best, current)
        elif mark in (Mark.SKIPPED, Mark.MISSED):
            current = 0
        # OPEN (only today can be open for long) and NOTHING leave the streak as it is.
    return current, best


def tally(records: Iterable[tuple[date, Mark]], first: date, last: date) -> Tally:
    """Count occurrence marks on local days first..last, both included."""
    counts = dict.fromkeys(Mark, 0)
    for day, mark in records:
        if first <= day <= last:
            counts[mark] += 1
    return Tally(
        done=counts[Mark.DONE],
        snoozed_done=counts[Mark.SNOOZED_DONE],
        skipped=counts[Mark.SKIPPED],
        missed=counts[Mark.MISSED],
    )


def reminder_progress(
    reminder: Tracked, records: Sequence[Record], zone: tzinfo, today: date
) -> ReminderProgress:
    """Work out one reminder's progress from its occurrences."""
    marked: list[tuple[date, Mark]] = []
    for record in records:
        day = record.scheduled_for.astimezone(zone).date()
        marked.append((day, mark_of(record, day, today)))
    by_day: dict[date, list[Mark]] = {}
    for day, mark in marked:
        by_day.setdefault(day, []).append(mark)
    days = {day: day_mark(marks) for day, marks in by_day.items()}
    days = {day: mark for day, mark in days.items() if mark != Mark.NOTHING}
    current, best = streaks(days, today)
    return ReminderProgress(
        reminder=reminder,
        week=tally(marked, today - timedelta(days=WEEK_DAYS - 1), today),
        month=tally(marked, today - timedelta(days=MONTH_DAYS - 1), today),
        current_streak=current,
        best_streak=best,
        days=days,
    )


def progress(
    reminders: Sequence[Tracked], records: Sequence[Record], zone: tzinfo, now: datetime
) -> Progress:
    """Every reminder's progress as of `now`, in the user's zone `zone`."""
    today = now.astimezone(zone).date()
    by_reminder: dict[int, list[Record]] = {}
    for record in records:
        by_reminder.setdefault(record.reminder_id, []).append(record)
    return Progress(
        today=today,
        reminders=tuple(
            reminder_progress(r, by_reminder.get(r.reminder_id, []), zone, today) for r in reminders
        ),
    )
