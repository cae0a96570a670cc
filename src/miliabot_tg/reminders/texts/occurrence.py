"""The reminder message itself and the answers to its buttons."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from miliabot_tg.content import Guide
from miliabot_tg.reminders.texts.shared import SNOOZE_CHOICES, hhmm, when


def tip_for(guide: Guide, kind: str, occurrence_id: int) -> str | None:
    """A tip for this kind, rotating with each occurrence; None for custom reminders."""
    tips = guide.tips.get(kind)
    if not tips:
        return None
    return tips[occurrence_id % len(tips)]


@dataclass(frozen=True)
class DueReminder:
    """One occurrence about to be sent, as the reminder message shows it."""

    occurrence_id: int
    kind: str
    label: str
    scheduled_local: datetime
    late: bool
    follow_up: bool


# Several reminders due together share a message, up to this many (4 buttons each; Telegram
# allows about a hundred buttons, and a phone shows a dozen rows comfortably).
MAX_GROUPED: Final = 8
_HEADINGS: Final[Mapping[str, str]] = {
    "sunscreen": "☀️ <b>Time for sunscreen!</b>",
    "moisturize": "💧 <b>Time to moisturize</b>",
    "exfoliate": "✨ <b>Exfoliation evening</b>",
}
_ICONS: Final[Mapping[str, str]] = {"sunscreen": "☀️", "moisturize": "💧", "exfoliate": "✨"}
_SHORT_LABEL: Final = 20


def reminder_message(
    *,
    occurrence_id: int,
    kind: str,
    label: str,
    tip: str | None,
    scheduled_local: datetime,
    late: bool,
    follow_up: bool,
) -> tuple[str, InlineKeyboardMarkup]:
    """The message for one reminder: what to do, a tip (already HTML), the answer buttons."""
    item = DueReminder(occurrence_id, kind, label, scheduled_local, late, follow_up)
    return _single_reminder(item, tip)


def reminders_message(
    items: Sequence[DueReminder], tip: str | None
) -> tuple[str, InlineKeyboardMarkup]:
    """The message that reminds: what to do, a tip (already HTML), and the answer buttons.

    One reminder gets its own heading and a row of answers; several due together get one
    message that names them all, with a row of answers for each.
    """
    if len(items) == 1:
        return _single_reminder(items[0], tip)
    names = ", ".join(_name(item) for item in items)
    lines = [f"🔔 <b>Time for: {names}</b>"]
    for item in items:
        line = f"{_ICONS.get(item.kind, '🔔')} {_name(item, capital=True)}"
        if item.follow_up:
            line += " (snoozed)"
        if item.late:
            line += f" <i>(due at {hhmm(item.scheduled_local)}; I was offline)</i>"
        lines.append(line)
    if tip:
        lines.append(f"\n💡 Tip: {tip}")
    rows = [
        [
            InlineKeyboardButton(
                f"✅ {_short(_name(item, capital=True, escaped=False))}",
                callback_data=f"occ:done:{item.occurrence_id}",
            ),
            *_later_buttons(item.occurrence_id, short=True),
        ]
        for item in items
    ]
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _single_reminder(item: DueReminder, tip: str | None) -> tuple[str, InlineKeyboardMarkup]:
    heading = _HEADINGS.get(item.kind, f"🔔 <b>{escape(item.label, quote=False)}</b>")
    if item.follow_up:
        heading += " (snoozed)"
    lines = [heading]
    if item.late:
        lines.append(f"<i>This was due at {hhmm(item.scheduled_local)}; I was offline.</i>")
    if tip:
        lines.append(f"\n💡 Tip: {tip}")
    done = InlineKeyboardButton("✅ Done", callback_data=f"occ:done:{item.occurrence_id}")
    later = _later_buttons(item.occurrence_id, short=False)
    return "\n".join(lines), InlineKeyboardMarkup([[done], later])


def _later_buttons(occurrence_id: int, *, short: bool) -> list[InlineKeyboardButton]:
    first, second = SNOOZE_CHOICES
    return [
        InlineKeyboardButton(
            "😴 15m" if short else "😴 15 min",
            callback_data=f"occ:snooze:{occurrence_id}:{first}",
        ),
        InlineKeyboardButton(
            "😴 1h" if short else "😴 1 hour",
            callback_data=f"occ:snooze:{occurrence_id}:{second}",
        ),
        InlineKeyboardButton("⏭" if short else "⏭ Skip", callback_data=f"occ:skip:{occurrence_id}"),
    ]


def _name(item: DueReminder, *, capital: bool = False, escaped: bool = True) -> str:
    """What a reminder is called in a list: its kind, or a custom reminder's own label."""
    if item.kind in _HEADINGS:
        return item.kind.capitalize() if capital else item.kind
    return escape(item.label, quote=False) if escaped else item.label


def _short(text: str) -> str:
    return text if len(text) <= _SHORT_LABEL else text[: _SHORT_LABEL - 1] + "…"


OUTCOME_DONE: Final = "✅ Done — nice work!"
OUTCOME_SKIPPED: Final = "⏭ Skipped"


def outcome_snoozed(until: datetime, now: datetime, tz: tzinfo, *, moved_by_quiet: bool) -> str:
    """Say when the follow-up comes: ``at 08:45`` today, else with its day."""
    at = when(until, now, tz).removeprefix("today ")
    if moved_by_quiet:
        return f"😴 That falls in your quiet hours, so I'll remind you again {at}, when they end."
    return f"😴 I'll remind you again {at}."


OCCURRENCE_GONE: Final = "I can't find that reminder any more."
OCCURRENCE_FINISHED: Final[Mapping[str, str]] = {
    "done": "Already marked done. ✅",
    "skipped": "Already skipped.",
    "missed": "That one has passed.",
    "failed": "That one has passed.",
}
STALE_BUTTON: Final = "That button is out of date. Send /reminders to start again."
