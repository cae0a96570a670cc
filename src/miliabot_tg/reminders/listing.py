"""/reminders: the list, with pause, resume, edit and delete for each reminder, pages, and
the button that resumes every reminder paused with /stop.
"""

from datetime import datetime

from sqlmodel import Session
from telegram import InlineKeyboardMarkup, Message, Update

from miliabot_tg import repo
from miliabot_tg.handlers import Context, show_in_place
from miliabot_tg.models import Reminder
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import (
    DAILY_WORDS,
    Pending,
    ReminderBase,
    Zone,
    append_line,
    message_of,
    reply,
)
from miliabot_tg.schedule import DAILY, ParseError, Rule, parse_remind


class ListHandlers(ReminderBase):
    """/reminders and its buttons."""

    async def reminders(self, update: Update, context: Context) -> None:
        """List the user's reminders with buttons for each."""
        user = update.effective_user
        if user is None:
            return
        await reply(message_of(update), await self._list_page(user.id, 0))

    async def _list_page(
        self, user_id: int, page: int, note: str = ""
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        now = self.deps.clock()
        zone, prefs, reminders = await self.deps.read(
            user_id,
            lambda s: (
                self._zone(s, user_id),
                repo.get_preferences(session=s, user_id=user_id),
                repo.list_reminders(session=s, user_id=user_id),
            ),
        )
        items = [_listed(r, self._next_text(r, zone, now)) for r in reminders]
        all_paused = prefs is not None and prefs.reminders_paused
        return rt.reminder_list(items, page=page, zone=zone.key, all_paused=all_paused, note=note)

    async def list_button(self, update: Update, context: Context) -> None:
        """Pause, resume, edit or delete a reminder from the list, or page through it."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        parts = query.data.split(":")
        try:
            action = parts[1]
            if action == "resumeall":
                await self._resume_all(update, user.id, page=int(parts[2]) if parts[2:] else None)
                return
            if action in ("list", "cancel"):
                await query.answer()
                await show_in_place(update, *await self._list_page(user.id, int(parts[2])))
                return
            reminder_id, page = int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            await query.answer(rt.STALE_BUTTON, show_alert=True)
            return
        now = self.deps.clock()
        reminder = await self.deps.write(
            user.id, lambda s: self._apply_action(s, user.id, reminder_id, action, now)
        )
        if reminder is None:
            await query.answer(rt.REMINDER_GONE, show_alert=True)
            await show_in_place(update, *await self._list_page(user.id, page))
            return
        await query.answer()
        if action in ("pause", "resume"):
            if reminder.next_due_at is not None:
                self.deps.wake(reminder.next_due_at)
            await show_in_place(update, *await self._list_page(user.id, page))
        elif action == "edit":
            self._wait(user.id, Pending("edit", now, reminder_id=reminder_id))
            await show_in_place(update, *rt.edit_prompt(_listed(reminder, None), page))
        elif action == "del":
            await show_in_place(update, *rt.delete_question(_listed(reminder, None), page))
        elif action == "delyes":
            await show_in_place(update, *await self._list_page(user.id, page, note=rt.DELETED))
        else:
            await show_in_place(update, *await self._list_page(user.id, page))

    def _apply_action(
        self, session: Session, user_id: int, reminder_id: int, action: str, now: datetime
    ) -> Reminder | None:
        """Pause, resume or delete as the button says; return the reminder, None if gone."""
        reminder = repo.get_reminder(session=session, user_id=user_id, reminder_id=reminder_id)
        toggles = action in ("pause", "resume")
        if reminder is not None and toggles and reminder.paused != (action == "pause"):
            return repo.set_reminder_paused(
                session=session,
                user_id=user_id,
                reminder_id=reminder_id,
                paused=action == "pause",
                now=now,
                default_key=self.deps.settings.default_tz,
            )
        if reminder is not None and action == "delyes":
            repo.delete_reminder(session=session, user_id=user_id, reminder_id=reminder_id)
        return reminder

    # "Resume all" is one of the list's buttons (rm:resumeall), though /stop and /start send it
    # too: from the list it redraws the page, elsewhere it adds a line.
    async def _resume_all(self, update: Update, user_id: int, *, page: int | None) -> None:
        query = update.callback_query
        assert query is not None
        now, default_key = self.deps.clock(), self.deps.settings.default_tz

        def resume(session: Session) -> tuple[bool, list[Reminder], Zone]:
            prefs = repo.get_preferences(session=session, user_id=user_id)
            was_paused = prefs is not None and prefs.reminders_paused
            # Only when paused: re-planning from now would drop a firing that is due.
            reminders = (
                repo.set_all_paused(
                    session=session,
                    user_id=user_id,
                    paused=False,
                    now=now,
                    default_key=default_key,
                )
                if was_paused
                else []
            )
            return was_paused, reminders, self._zone(session, user_id)

        was_paused, reminders, zone = await self.deps.write(user_id, resume)
        due = [r for r in reminders if r.next_due_at is not None]
        first = min(due, key=lambda r: r.next_due_at or now) if due else None
        if first is not None and first.next_due_at is not None:
            self.deps.wake(first.next_due_at)
        await query.answer()
        if not was_paused:
            line = rt.ALREADY_RESUMED
        elif first is None:
            line = rt.resumed(len(reminders), None, None)
        else:
            line = rt.resumed(
                len(reminders), rt.title(first.kind, first.label), self._next_text(first, zone, now)
            )
        if page is not None:
            await show_in_place(update, *await self._list_page(user_id, page, note=line))
        else:
            await append_line(update, line, replacing=rt.RESUME_OFFER)

    async def _typed_edit(
        self, message: Message, user_id: int, pending: Pending, text: str
    ) -> None:
        now, default_key = self.deps.clock(), self.deps.settings.default_tz
        zone, reminder = await self.deps.read(
            user_id,
            lambda s: (
                self._zone(s, user_id),
                repo.get_reminder(session=s, user_id=user_id, reminder_id=pending.reminder_id),
            ),
        )
        if reminder is None:
            self._pending.pop(user_id, None)
            await message.reply_text(rt.REMINDER_GONE)
            return
        try:
            rule = parse_remind(f"x {text}", today=now.astimezone(zone.tz).date()).rule
        except ParseError as exc:
            await message.reply_text(rt.typed_problem(exc.message, rt.EDIT_EXAMPLE))
            return
        if rule.days == DAILY and not DAILY_WORDS.search(text):
            rule = Rule(rule.times, Rule.from_text(reminder.rule).days)  # only a time: keep days
        updated = await self.deps.write(
            user_id,
            lambda s: repo.update_reminder_rule(
                session=s,
                user_id=user_id,
                reminder_id=pending.reminder_id,
                rule=rule,
                now=now,
                default_key=default_key,
            ),
        )
        self._pending.pop(user_id, None)
        if updated is None:
            await message.reply_text(rt.REMINDER_GONE)
            return
        if updated.next_due_at is not None:
            self.deps.wake(updated.next_due_at)
        next_text = self._next_text(updated, zone, now)
        await message.reply_text(rt.rule_updated(updated.kind, updated.label, rule, next_text))
        await self._caution_if_needed(message.chat, updated.kind, rule)


def _listed(reminder: Reminder, next_text: str | None) -> rt.Listed:
    assert reminder.id is not None
    return rt.Listed(
        id=reminder.id,
        kind=reminder.kind,
        label=reminder.label,
        rule=Rule.from_text(reminder.rule),
        paused=reminder.paused,
        next_text=next_text,
    )
