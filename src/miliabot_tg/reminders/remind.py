"""/remind: a reminder from one typed line, or step by step with buttons."""

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Final

from sqlmodel import Session
from telegram import Chat, Message, Update

from miliabot_tg import progress_store, repo
from miliabot_tg.handlers import Context, show_in_place
from miliabot_tg.models import Reminder
from miliabot_tg.reminders import texts as rt
from miliabot_tg.reminders.common import (
    DAILY_WORDS,
    Pending,
    ReminderBase,
    Zone,
    chat_of,
    command_text,
    message_of,
    reply,
    send,
)
from miliabot_tg.schedule import (
    DAILY,
    MAX_LABEL_LENGTH,
    Kind,
    ParseError,
    ReminderSpec,
    Rule,
    parse_remind,
)

# Enough for every routine; a cap keeps one account from filling the dispatcher's table.
MAX_REMINDERS: Final = 50
_KINDS: Final[dict[str, Kind]] = {
    "sunscreen": "sunscreen",
    "moisturize": "moisturize",
    "exfoliate": "exfoliate",
    "custom": "custom",
}


@dataclass(frozen=True)
class _Added:
    reminder: Reminder
    created: bool
    zone: Zone
    all_paused: bool


class RemindHandlers(ReminderBase):
    """/remind, its button flow and the names, times and days typed into it."""

    # --- /remind: one line ---------------------------------------------------------------------

    async def remind(self, update: Update, context: Context) -> None:
        """Add a reminder from one line, or open the button flow when the line is empty."""
        message, user = message_of(update), update.effective_user
        if user is None:
            return
        line = command_text(message)
        if not line:
            await reply(message, rt.flow_kinds())
            return
        zone = await self._user_zone(user.id)
        today = self.deps.clock().astimezone(zone.tz).date()
        try:
            spec = parse_remind(line, today=today)
        except ParseError as exc:
            await message.reply_text(rt.remind_problem(exc.message))
            return
        await self._add_and_announce(message.chat, user.id, spec, query_update=None)

    async def _add_and_announce(
        self, chat: Chat, user_id: int, spec: ReminderSpec, *, query_update: Update | None
    ) -> None:
        """Store the reminder and confirm it; caution and ask for a timezone when due."""
        now = self.deps.clock()
        added = await self.deps.write(user_id, lambda s: self._add(s, user_id, spec, now))
        if added is None:
            text = rt.too_many(MAX_REMINDERS)
        elif not added.created:
            text = rt.already_have(spec.kind, spec.label, spec.rule)
        else:
            text = rt.reminder_added(
                kind=spec.kind,
                label=spec.label,
                rule=spec.rule,
                zone=added.zone.key,
                next_text=self._next_text(added.reminder, added.zone, now),
                all_paused=added.all_paused,
            )
        if query_update is not None:
            await show_in_place(query_update, text, None)
        else:
            await chat.send_message(text)
        if added is None or not added.created:
            return
        if added.reminder.next_due_at is not None:
            self.deps.wake(added.reminder.next_due_at)
        await self._caution_if_needed(chat, spec.kind, spec.rule)
        if added.zone.assumed:
            await send(chat, rt.timezone_question(added.zone.key, now.astimezone(added.zone.tz)))

    def _add(
        self, session: Session, user_id: int, spec: ReminderSpec, now: datetime
    ) -> _Added | None:
        """Store a reminder unless the user has the same one; None when at the limit."""
        zone = self._zone(session, user_id)
        prefs = repo.get_preferences(session=session, user_id=user_id)
        all_paused = prefs is not None and prefs.reminders_paused
        existing = repo.list_reminders(session=session, user_id=user_id)
        rule_text = spec.rule.to_text()
        for reminder in existing:
            same_label = spec.kind != "custom" or reminder.label.casefold() == spec.label.casefold()
            if reminder.kind == spec.kind and same_label and reminder.rule == rule_text:
                # A double tap or a repeated command: one reminder is what was meant.
                return _Added(reminder, False, zone, all_paused)
        if len(existing) >= MAX_REMINDERS:
            return None
        reminder = repo.add_reminder(
            session=session,
            user_id=user_id,
            spec=spec,
            now=now,
            default_key=self.deps.settings.default_tz,
        )
        # The weekly progress summary is on by default for people with reminders.
        progress_store.ensure_weekly(
            session=session, user_id=user_id, now=now, default_key=self.deps.settings.default_tz
        )
        return _Added(reminder, True, zone, all_paused)

    async def flow_button(self, update: Update, context: Context) -> None:
        """Move the /remind button flow one step, editing its message in place."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        parts = query.data.split(":")
        action = parts[1] if len(parts) > 1 else ""
        now = self.deps.clock()
        if action in ("start", "cancel"):
            self._pending.pop(user.id, None)
            await query.answer()
            await show_in_place(
                update, *(rt.flow_kinds() if action == "start" else (rt.FLOW_CANCELLED, None))
            )
            return
        kind = _KINDS.get(parts[2]) if len(parts) > 2 else None
        if action == "kind" and kind == "custom":
            self._wait(user.id, Pending("label", now))
            await query.answer()
            await show_in_place(update, *rt.flow_label())
            return
        label = self._flow_label(user.id, kind) if kind is not None else None
        try:
            times = rt.decode_times(parts[3]) if action in ("time", "days") else ()
            rule = None
            if action == "days":
                zone = await self._user_zone(user.id)
                rule = Rule(times, rt.days_from_code(parts[4], now.astimezone(zone.tz).date()))
        except (IndexError, ValueError):
            label = None
        if kind is None or label is None or action not in ("kind", "when", "time", "days"):
            await query.answer(rt.FLOW_EXPIRED, show_alert=True)
            return
        await query.answer()
        if rule is not None:
            self._pending.pop(user.id, None)
            spec = ReminderSpec(kind=kind, label=label, rule=rule)
            await self._add_and_announce(chat_of(update), user.id, spec, query_update=update)
        elif action == "time":
            self._wait(user.id, Pending("days", now, kind, label, times))
            await show_in_place(update, *rt.flow_days(kind, label, times))
        else:
            self._wait(user.id, Pending("time", now, kind, label))
            await show_in_place(update, *rt.flow_times(kind, label))

    def _flow_label(self, user_id: int, kind: Kind) -> str | None:
        """The reminder's name: the kind itself, or the custom name waiting in memory."""
        if kind != "custom":
            return kind
        pending = self.waiting_for(user_id)
        return pending.label if pending is not None and pending.label else None

    # --- typed answers in the button flow ------------------------------------------------------

    async def _typed_label(self, message: Message, user_id: int, text: str) -> None:
        label = " ".join(text.split())
        if not label:
            await message.reply_text(rt.LABEL_EMPTY)
            return
        if len(label) > MAX_LABEL_LENGTH:
            await message.reply_text(rt.LABEL_TOO_LONG)
            return
        self._wait(user_id, Pending("time", self.deps.clock(), kind="custom", label=label))
        await reply(message, rt.flow_times("custom", label))

    async def _typed_when(
        self, message: Message, user_id: int, pending: Pending, text: str
    ) -> None:
        now = self.deps.clock()
        zone = await self._user_zone(user_id)
        today = now.astimezone(zone.tz).date()
        try:
            if pending.step == "time":
                rule = parse_remind(f"x {text}", today=today).rule
                if rule.days == DAILY and not DAILY_WORDS.search(text):
                    # Only times so far: ask for the days next.
                    self._wait(
                        user_id, Pending("days", now, pending.kind, pending.label, rule.times)
                    )
                    await reply(message, rt.flow_days(pending.kind, pending.label, rule.times))
                    return
            else:
                rule = _parse_days_answer(text, pending.times, today)
        except ParseError as exc:
            example = "07:45" if pending.step == "time" else "mon,wed,fri"
            await message.reply_text(rt.typed_problem(exc.message, example))
            return
        self._pending.pop(user_id, None)
        spec = ReminderSpec(kind=pending.kind, label=pending.label, rule=rule)
        await self._add_and_announce(message.chat, user_id, spec, query_update=None)


def _parse_days_answer(text: str, times: tuple[time, ...], today: date) -> Rule:
    """Days typed at the days step; a line with its own time replaces the times too."""
    try:
        return parse_remind(f"x {text}", today=today).rule
    except ParseError:
        at = ",".join(rt.hhmm(t) for t in times)
        return parse_remind(f"x {at} {text}", today=today).rule
