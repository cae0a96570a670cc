"""What /progress and the weekly summary say: captions (at most 1024 characters, labels
HTML-escaped), chart titles (plain text) and the words for someone with no history yet."""

from html import escape
from typing import Final

from miliabot_tg.progress import CHART_WEEKS, Progress, ReminderProgress, Tally
from miliabot_tg.reminders.texts.shared import KIND_ICON, KIND_NAME

MAX_CAPTION: Final = 1024
_SHORT_LABEL: Final = 28

CHART_HEADING: Final = f"Your last {CHART_WEEKS} weeks"
WEEK_HEADING: Final = "Your week"

NO_REMINDERS: Final = (
    "📈 <b>Progress</b> shows how you keep up your routine: a calendar of the last "
    f"{CHART_WEEKS} weeks and your streaks.\n\n"
    "It starts with a reminder: try <code>/remind sunscreen 08:30 daily</code>, or just "
    "/remind for buttons."
)
NO_HISTORY: Final = (
    "📈 <b>Your progress will fill in here.</b>\n\n"
    "Each time a reminder comes, answer it with <b>Done</b> (or <b>Skip</b>, or a snooze "
    "and then Done). Every answer becomes a square in a calendar of your last "
    f"{CHART_WEEKS} weeks, and your streaks start counting.\n\n"
    "Snoozed and then done still counts, and days with nothing due never break a streak. "
    "Every Sunday evening I'll also send you a short summary of your week "
    "(/settings turns it off)."
)
WEEKLY_FOOTER: Final = (
    "<i>Every Sunday at 19:00; /settings turns it off. /progress: the details.</i>"
)
WEEKLY_ON: Final = "📊 Weekly summary is on."
WEEKLY_OFF: Final = "📊 No more weekly summaries."


def name(reminder: ReminderProgress) -> str:
    """A reminder's name, plain: the kind's name, or the user's own label (shortened)."""
    kind = reminder.reminder.kind
    if kind in KIND_NAME and kind != "custom":
        return KIND_NAME[kind]
    label = " ".join(reminder.reminder.label.split())
    if len(label) > _SHORT_LABEL:
        label = label[: _SHORT_LABEL - 1].rstrip() + "…"
    return label or "Reminder"


def chart_titles(progress: Progress) -> list[str]:
    """One plain-text title per reminder, for the chart."""
    return [name(r) + (" (paused)" if r.reminder.paused else "") for r in progress.reminders]


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _streak(reminder: ReminderProgress) -> str:
    current, best = reminder.current_streak, reminder.best_streak
    if current and current == best:
        return f"🔥 {_days(current)} in a row, your best"
    if current:
        return f"🔥 {_days(current)} in a row (best {best})"
    if best:
        return f"best streak {_days(best)}"
    return "no streak yet"


def _tally(period: str, tally: Tally) -> str:
    if not tally.total:
        return f"{period}: nothing due"
    parts = [f"{tally.completed}/{tally.total} done"]
    if tally.snoozed_done:
        parts.append(f"{tally.snoozed_done} after a snooze")
    if tally.skipped:
        parts.append(f"{tally.skipped} skipped")
    if tally.missed:
        parts.append(f"{tally.missed} missed")
    return f"{period}: " + ", ".join(parts)


def _block(reminder: ReminderProgress, *, weekly: bool) -> str:
    icon = KIND_ICON.get(reminder.reminder.kind, "🔔")
    title = escape(name(reminder), quote=False)
    paused = " <i>(paused)</i>" if reminder.reminder.paused else ""
    head = f"{icon} <b>{title}</b>{paused}: {_streak(reminder)}"
    if weekly:
        return f"{head}\n{_tally('this week', reminder.week)}"
    return f"{head}\n{_tally('7 days', reminder.week)} · {_tally('30 days', reminder.month)}"


def caption(progress: Progress, *, weekly: bool = False) -> str:
    """The summary under the chart: a block per reminder, as many as fit in 1024 characters."""
    heading = f"🗓 <b>{WEEK_HEADING}</b>" if weekly else f"📈 <b>{CHART_HEADING}</b>"
    footer = WEEKLY_FOOTER if weekly else ""
    text = heading
    total = len(progress.reminders)
    for shown, reminder in enumerate(progress.reminders):
        block = _block(reminder, weekly=weekly)
        rest = total - shown - 1
        more = f"\n…and {rest} more" if rest else ""
        # Room for this block, and for the "…and N more" line if anything is left after it.
        if len(text) + 2 + len(block) + len(more) + 2 + len(footer) > MAX_CAPTION:
            text += f"\n…and {total - shown} more"
            break
        text += f"\n\n{block}"
    return f"{text}\n\n{footer}" if footer else text
