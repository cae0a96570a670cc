"""The Done, Snooze and Skip buttons on a reminder message."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Final

from sqlmodel import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from miliabot_tg import repo
from miliabot_tg.handlers import Context, show_in_place
from miliabot_tg.models import OccurrenceStatus
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import ReminderBase, append_line
from miliabot_tg.schedule import snooze_until

# An occurrence the user can still answer: on its way, delivered, or waiting for a follow-up.
_ANSWERABLE: Final = frozenset(
    {OccurrenceStatus.SENDING.value, OccurrenceStatus.SENT.value, OccurrenceStatus.SNOOZED.value}
)


class OccurrenceHandlers(ReminderBase):
    """The answers to one reminder message."""

    async def occurrence_button(self, update: Update, context: Context) -> None:
        """Record Done, Skip or Snooze for one occurrence and show it on the message."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        parts = query.data.split(":")
        action = parts[1] if len(parts) > 1 else ""
        try:
            occurrence_id = int(parts[2])
            minutes = int(parts[3]) if action == "snooze" else 0
        except (IndexError, ValueError):
            action = ""
        wanted = {"done": 3, "skip": 3, "snooze": 4}.get(action)
        if wanted != len(parts) or (action == "snooze" and minutes not in rt.SNOOZE_CHOICES):
            await query.answer(rt.STALE_BUTTON, show_alert=True)
            return
        now = self.deps.clock()
        problem, line, until = await self.deps.write(
            user.id,
            lambda s: self._answer_occurrence(s, user.id, occurrence_id, action, minutes, now),
        )
        if problem is not None:
            await query.answer(problem, show_alert=True)
            return
        if until is not None:
            self.deps.wake(until)
        await query.answer()
        await show_answer(update, occurrence_id, line)

    def _answer_occurrence(
        self,
        session: Session,
        user_id: int,
        occurrence_id: int,
        action: str,
        minutes: int,
        now: datetime,
    ) -> tuple[str | None, str, datetime | None]:
        """Record the answer; return (why it was refused, the line to show, snoozed until)."""
        occurrence = repo.get_occurrence(
            session=session, user_id=user_id, occurrence_id=occurrence_id
        )
        if occurrence is None:
            return rt.OCCURRENCE_GONE, "", None
        if occurrence.status not in _ANSWERABLE:
            return rt.OCCURRENCE_FINISHED.get(occurrence.status, rt.OCCURRENCE_GONE), "", None
        if action != "snooze":
            status = OccurrenceStatus.DONE if action == "done" else OccurrenceStatus.SKIPPED
            repo.finish_occurrence(
                session=session,
                user_id=user_id,
                occurrence_id=occurrence_id,
                status=status,
                now=now,
            )
            return None, rt.OUTCOME_DONE if action == "done" else rt.OUTCOME_SKIPPED, None
        zone = self._zone(session, user_id)
        quiet = repo.quiet_hours(repo.get_preferences(session=session, user_id=user_id))
        until = snooze_until(now, minutes, quiet, zone.tz)
        repo.snooze_occurrence(
            session=session, user_id=user_id, occurrence_id=occurrence_id, until=until, now=now
        )
        moved = until != now + timedelta(minutes=minutes)
        return None, rt.outcome_snoozed(until, now, zone.tz, moved_by_quiet=moved), until


async def show_answer(update: Update, occurrence_id: int, line: str) -> None:
    """Show the answer on the reminder message.

    A message for one reminder keeps its text, gains the line and loses its buttons. In a
    message for several, only the answered reminder's row of buttons goes, and the line
    says which reminder it was about; the others can still be answered.
    """
    query = update.callback_query
    message = query.message if query is not None else None
    if not isinstance(message, Message) or message.reply_markup is None:
        await append_line(update, line)
        return
    mine: list[Sequence[InlineKeyboardButton]] = []
    others: list[Sequence[InlineKeyboardButton]] = []
    for row in message.reply_markup.inline_keyboard:
        ids = {_occurrence_of(button.callback_data) for button in row}
        (mine if occurrence_id in ids else others).append(row)
    if not mine or not any(_occurrence_of(b.callback_data) for row in others for b in row):
        await append_line(update, line)
        return
    name = mine[0][0].text.removeprefix("✅").strip()
    text = f"{message.text_html}\n{escape(name, quote=False)}: {line}"
    if len(text) > rt.MAX_MESSAGE:
        text = line
    await show_in_place(update, text, InlineKeyboardMarkup(others))


def _occurrence_of(callback_data: object) -> int | None:
    """The occurrence a reminder button answers (``occ:<action>:<id>[:<minutes>]``)."""
    if not isinstance(callback_data, str) or not callback_data.startswith(rt.CB_OCCURRENCE):
        return None
    parts = callback_data.split(":")
    return int(parts[2]) if len(parts) > 2 and parts[2].isascii() and parts[2].isdigit() else None
