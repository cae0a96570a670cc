"""Thin Telegram callbacks for reminders: /remind, /reminders, /timezone, /quiet, /stop and
the buttons on reminder messages.

Typed answers in the middle of a flow (a custom reminder's name, a typed time or days, an
edited rule, a typed city) wait in memory, per user, for at most ``PENDING_TTL``; any
command ends the wait. Everything else lives in the database or in the buttons' data.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal

from sqlmodel import Session
from telegram import (
    Chat,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from miliabot_tg import reminder_texts as rt
from miliabot_tg import repo
from miliabot_tg.db import new_session
from miliabot_tg.handlers import Context, Deps, show_in_place
from miliabot_tg.models import OccurrenceStatus, Reminder
from miliabot_tg.schedule import (
    DAILY,
    MAX_LABEL_LENGTH,
    Kind,
    ParseError,
    ReminderSpec,
    Rule,
    parse_quiet,
    parse_remind,
    snooze_until,
    times_per_week,
)
from miliabot_tg.timezones import (
    ResolvedZone,
    TimezoneError,
    resolve_location,
    resolve_timezone,
    zone_from_key,
)

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove

# A half-finished flow is forgotten after this long, so a later message is a search again.
PENDING_TTL: Final = timedelta(minutes=30)
# Enough for every routine; a cap keeps one account from filling the dispatcher's table.
MAX_REMINDERS: Final = 50
MAX_ZONE_TEXT: Final = 100
_KINDS: Final[dict[str, Kind]] = {
    "sunscreen": "sunscreen",
    "moisturize": "moisturize",
    "exfoliate": "exfoliate",
    "custom": "custom",
}
# An occurrence the user can still answer: on its way, delivered, or waiting for a follow-up.
_ANSWERABLE: Final = frozenset(
    {OccurrenceStatus.SENDING.value, OccurrenceStatus.SENT.value, OccurrenceStatus.SNOOZED.value}
)
_DAILY_WORDS: Final = re.compile(r"\b(?:daily|every\s*day|each day|all days)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Pending:
    """Typed input the bot waits for from one user."""

    step: Literal["label", "time", "days", "edit", "timezone"]
    since: datetime
    kind: Kind = "custom"
    label: str = ""
    times: tuple[time, ...] = ()
    reminder_id: int = 0


@dataclass(frozen=True)
class _Zone:
    key: str
    tz: tzinfo
    assumed: bool  # the user never chose it: it is the configured default


@dataclass(frozen=True)
class _Added:
    reminder: Reminder
    created: bool
    zone: _Zone
    all_paused: bool


class _AwaitingInput(filters.MessageFilter):
    """Matches a message from a user the bot is waiting for typed input from."""

    def __init__(self, owner: "ReminderHandlers") -> None:
        super().__init__(name="AwaitingInput")
        self._owner = owner

    def filter(self, message: Message) -> bool:
        user = message.from_user
        return user is not None and self._owner.waiting_for(user.id) is not None


class ReminderHandlers:
    """The reminder callbacks, bound to their dependencies."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._pending: dict[int, Pending] = {}

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register every reminder handler; call before the guide's catch-all handlers."""
        private = filters.ChatType.PRIVATE
        new = private & filters.UpdateType.MESSAGE  # not edits: an edited /remind adds nothing
        # Group -2 runs first: a command, or a button outside the /remind flow, ends any wait
        # for typed input, so a later question is not mistaken for an answer.
        app.add_handler(MessageHandler(new & filters.COMMAND, self.drop_pending), group=-2)
        app.add_handler(
            CallbackQueryHandler(self.drop_pending, pattern=rf"^(?!{rt.CB_FLOW})"), group=-2
        )

        app.add_handler(CommandHandler("remind", self.remind, filters=new))
        app.add_handler(CommandHandler("reminders", self.reminders, filters=new))
        app.add_handler(CommandHandler("timezone", self.timezone, filters=new))
        app.add_handler(CommandHandler("quiet", self.quiet, filters=new))
        app.add_handler(CommandHandler("stop", self.stop, filters=new))
        # Before the guide's "I can only read text" answer.
        app.add_handler(MessageHandler(new & filters.LOCATION, self.location))
        # Before the guide's search, which takes every other text.
        app.add_handler(
            MessageHandler(new & filters.TEXT & ~filters.COMMAND & _AwaitingInput(self), self.typed)
        )
        app.add_handler(CallbackQueryHandler(self.flow_button, pattern=rf"^{rt.CB_FLOW}"))
        app.add_handler(CallbackQueryHandler(self.list_button, pattern=rf"^{rt.CB_LIST}"))
        app.add_handler(CallbackQueryHandler(self.zone_button, pattern=rf"^{rt.CB_ZONE}"))
        app.add_handler(
            CallbackQueryHandler(self.occurrence_button, pattern=rf"^{rt.CB_OCCURRENCE}")
        )

    # --- waiting for typed input ---------------------------------------------------------------

    def waiting_for(self, user_id: int) -> Pending | None:
        """Return what the bot waits for this user to type, if anything (and not expired)."""
        pending = self._pending.get(user_id)
        if pending is not None and self.deps.clock() - pending.since > PENDING_TTL:
            del self._pending[user_id]
            return None
        return pending

    def _wait(self, user_id: int, pending: Pending) -> None:
        expired = [u for u, p in self._pending.items() if pending.since - p.since > PENDING_TTL]
        for stale in expired:
            del self._pending[stale]
        self._pending[user_id] = pending

    async def drop_pending(self, update: Update, context: Context) -> None:
        """Stop waiting for typed input from this user."""
        if update.effective_user is not None:
            self._pending.pop(update.effective_user.id, None)

    async def typed(self, update: Update, context: Context) -> None:
        """Take typed input the bot asked for: a name, a time, days, a rule or a city."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        text = message.text or ""
        pending = self.waiting_for(user.id)
        if pending is None:
            await message.reply_text(rt.FLOW_EXPIRED)
        elif pending.step == "label":
            await self._typed_label(message, user.id, text)
        elif pending.step in ("time", "days"):
            await self._typed_when(message, user.id, pending, text)
        elif pending.step == "edit":
            await self._typed_edit(message, user.id, pending, text)
        else:
            self._pending.pop(user.id, None)
            await self._set_zone_from_text(message, user.id, text)

    async def _typed_label(self, message: Message, user_id: int, text: str) -> None:
        label = " ".join(text.split())
        if not label:
            await message.reply_text(rt.LABEL_EMPTY)
            return
        if len(label) > MAX_LABEL_LENGTH:
            await message.reply_text(rt.LABEL_TOO_LONG)
            return
        self._wait(user_id, Pending("time", self.deps.clock(), kind="custom", label=label))
        await _reply(message, rt.flow_times("custom", label))

    async def _typed_when(
        self, message: Message, user_id: int, pending: Pending, text: str
    ) -> None:
        now = self.deps.clock()
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user_id)
        today = now.astimezone(zone.tz).date()
        try:
            if pending.step == "time":
                rule = parse_remind(f"x {text}", today=today).rule
                if rule.days == DAILY and not _DAILY_WORDS.search(text):
                    # Only times so far: ask for the days next.
                    self._wait(
                        user_id, Pending("days", now, pending.kind, pending.label, rule.times)
                    )
                    await _reply(message, rt.flow_days(pending.kind, pending.label, rule.times))
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

    async def _typed_edit(
        self, message: Message, user_id: int, pending: Pending, text: str
    ) -> None:
        now = self.deps.clock()
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user_id)
            reminder = repo.get_reminder(
                session=session, user_id=user_id, reminder_id=pending.reminder_id
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
        if rule.days == DAILY and not _DAILY_WORDS.search(text):
            rule = Rule(rule.times, Rule.from_text(reminder.rule).days)  # only a time: keep days
        with new_session(self.deps.engine) as session:
            updated = repo.update_reminder_rule(
                session=session,
                user_id=user_id,
                reminder_id=pending.reminder_id,
                rule=rule,
                now=now,
                default_key=self.deps.settings.default_tz,
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

    # --- /remind -------------------------------------------------------------------------------

    async def remind(self, update: Update, context: Context) -> None:
        """Add a reminder from one line, or open the button flow when the line is empty."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        line = _command_text(message)
        if not line:
            await _reply(message, rt.flow_kinds())
            return
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user.id)
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
        with new_session(self.deps.engine) as session:
            added = self._add(session, user_id, spec, now)
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
            await _send(chat, rt.timezone_question(added.zone.key, now.astimezone(added.zone.tz)))

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
        return _Added(reminder, True, zone, all_paused)

    async def _caution_if_needed(self, chat: Chat, kind: str, rule: Rule) -> None:
        per_week = times_per_week(rule)
        if kind == "exfoliate" and per_week > rt.EXFOLIATION_LIMIT:
            await _send(chat, rt.exfoliation_caution(per_week))

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
                with new_session(self.deps.engine) as session:
                    zone = self._zone(session, user.id)
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
            await self._add_and_announce(_chat(update), user.id, spec, query_update=update)
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

    # --- /reminders ----------------------------------------------------------------------------

    async def reminders(self, update: Update, context: Context) -> None:
        """List the user's reminders with buttons for each."""
        user = update.effective_user
        if user is None:
            return
        await _reply(_message(update), self._list_page(user.id, 0))

    def _list_page(
        self, user_id: int, page: int, note: str = ""
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        now = self.deps.clock()
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user_id)
            prefs = repo.get_preferences(session=session, user_id=user_id)
            reminders = repo.list_reminders(session=session, user_id=user_id)
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
                await show_in_place(update, *self._list_page(user.id, int(parts[2])))
                return
            reminder_id, page = int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            await query.answer(rt.STALE_BUTTON, show_alert=True)
            return
        now, default_key = self.deps.clock(), self.deps.settings.default_tz
        with new_session(self.deps.engine) as session:
            reminder = repo.get_reminder(session=session, user_id=user.id, reminder_id=reminder_id)
            toggles = action in ("pause", "resume")
            if reminder is not None and toggles and reminder.paused != (action == "pause"):
                reminder = repo.set_reminder_paused(
                    session=session,
                    user_id=user.id,
                    reminder_id=reminder_id,
                    paused=action == "pause",
                    now=now,
                    default_key=default_key,
                )
            elif reminder is not None and action == "delyes":
                repo.delete_reminder(session=session, user_id=user.id, reminder_id=reminder_id)
        if reminder is None:
            await query.answer(rt.REMINDER_GONE, show_alert=True)
            await show_in_place(update, *self._list_page(user.id, page))
            return
        await query.answer()
        if action in ("pause", "resume"):
            if reminder.next_due_at is not None:
                self.deps.wake(reminder.next_due_at)
            await show_in_place(update, *self._list_page(user.id, page))
        elif action == "edit":
            self._wait(user.id, Pending("edit", now, reminder_id=reminder_id))
            await show_in_place(update, *rt.edit_prompt(_listed(reminder, None), page))
        elif action == "del":
            await show_in_place(update, *rt.delete_question(_listed(reminder, None), page))
        elif action == "delyes":
            await show_in_place(update, *self._list_page(user.id, page, note=rt.DELETED))
        else:
            await show_in_place(update, *self._list_page(user.id, page))

    # --- /stop and resuming --------------------------------------------------------------------

    async def stop(self, update: Update, context: Context) -> None:
        """Pause every reminder at once and say how to resume."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        with new_session(self.deps.engine) as session:
            prefs = repo.get_preferences(session=session, user_id=user.id)
            count = len(repo.list_reminders(session=session, user_id=user.id))
            already = prefs is not None and prefs.reminders_paused
            if count and not already:
                repo.set_all_paused(
                    session=session,
                    user_id=user.id,
                    paused=True,
                    now=self.deps.clock(),
                    default_key=self.deps.settings.default_tz,
                )
        if not count:
            await message.reply_text(rt.NOTHING_TO_STOP)
        elif already:
            await message.reply_text(rt.ALREADY_STOPPED)
        else:
            await _reply(message, rt.stopped(count))

    async def _resume_all(self, update: Update, user_id: int, *, page: int | None) -> None:
        query = update.callback_query
        assert query is not None
        now = self.deps.clock()
        with new_session(self.deps.engine) as session:
            prefs = repo.get_preferences(session=session, user_id=user_id)
            was_paused = prefs is not None and prefs.reminders_paused
            # Only when paused: re-planning from now would drop a firing that is due.
            reminders = (
                repo.set_all_paused(
                    session=session,
                    user_id=user_id,
                    paused=False,
                    now=now,
                    default_key=self.deps.settings.default_tz,
                )
                if was_paused
                else []
            )
            zone = self._zone(session, user_id)
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
            await show_in_place(update, *self._list_page(user_id, page, note=line))
        else:
            await _append(update, line, replacing=rt.RESUME_OFFER)

    # --- timezone ------------------------------------------------------------------------------

    async def timezone(self, update: Update, context: Context) -> None:
        """Set the timezone from a name, city or offset; without one, explain and offer GPS."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        text = _command_text(message)
        if text:
            await self._set_zone_from_text(message, user.id, text)
            return
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user.id)
        self._wait(user.id, Pending("timezone", self.deps.clock()))
        local_now = self.deps.clock().astimezone(zone.tz)
        await _reply(message, rt.timezone_prompt(zone.key, local_now, assumed=zone.assumed))

    async def location(self, update: Update, context: Context) -> None:
        """Set the timezone from a shared location (looked up offline, never stored)."""
        message, user = _message(update), update.effective_user
        if user is None or message.location is None:
            return
        self._pending.pop(user.id, None)
        try:
            zone = resolve_location(message.location.latitude, message.location.longitude)
        except ValueError:
            zone = None
        if zone is None:
            await message.reply_text(rt.LOCATION_UNKNOWN, reply_markup=ReplyKeyboardRemove())
            return
        await message.reply_text(
            self._apply_zone(user.id, zone), reply_markup=ReplyKeyboardRemove()
        )

    async def _set_zone_from_text(self, message: Message, user_id: int, text: str) -> None:
        if len(text) > MAX_ZONE_TEXT:
            await message.reply_text(rt.TIMEZONE_TOO_LONG)
            return
        try:
            zone = resolve_timezone(text)
        except TimezoneError as exc:
            suggestions = [(name, key) for name in exc.suggestions if (key := _key_of(name))]
            await _reply(message, rt.timezone_unknown(exc.message, suggestions))
            return
        await message.reply_text(
            self._apply_zone(user_id, zone), reply_markup=ReplyKeyboardRemove()
        )

    def _apply_zone(self, user_id: int, zone: ResolvedZone) -> str:
        """Store the zone, re-plan every reminder, and describe the result."""
        now = self.deps.clock()
        with new_session(self.deps.engine) as session:
            reminders = repo.set_timezone(
                session=session,
                user_id=user_id,
                key=zone.key,
                now=now,
                default_key=self.deps.settings.default_tz,
            )
        due = [r.next_due_at for r in reminders if r.next_due_at is not None]
        if due:
            self.deps.wake(min(due))
        return rt.timezone_set(
            name=zone.name,
            key=zone.key,
            local_now=now.astimezone(zone.tz),
            notes=zone.notes,
            rescheduled=len(due),
        )

    async def zone_button(self, update: Update, context: Context) -> None:
        """Keep the assumed zone, pick a suggested one, or ask for a location."""
        query, user = update.callback_query, update.effective_user
        if query is None or query.data is None or user is None:
            return
        if query.data == rt.CB_ZONE_LOCATION:
            with new_session(self.deps.engine) as session:
                zone = self._zone(session, user.id)
            self._wait(user.id, Pending("timezone", self.deps.clock()))
            await query.answer()
            local_now = self.deps.clock().astimezone(zone.tz)
            await _send(
                _chat(update), rt.timezone_prompt(zone.key, local_now, assumed=zone.assumed)
            )
            return
        keep = query.data.startswith(rt.CB_ZONE_KEEP)
        key = query.data.removeprefix(rt.CB_ZONE_KEEP if keep else rt.CB_ZONE_SET)
        resolved = _zone_for_key(key)
        if not (keep or query.data.startswith(rt.CB_ZONE_SET)) or resolved is None:
            await query.answer(rt.ZONE_GONE, show_alert=True)
            return
        await query.answer()
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user.id)
        if keep and not zone.assumed:
            await show_in_place(update, rt.timezone_already(zone.key), None)
            return
        await show_in_place(update, self._apply_zone(user.id, resolved), None)

    # --- quiet hours ---------------------------------------------------------------------------

    async def quiet(self, update: Update, context: Context) -> None:
        """Show, set or clear quiet hours."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        text = _command_text(message)
        with new_session(self.deps.engine) as session:
            zone = self._zone(session, user.id)
            current = repo.quiet_hours(repo.get_preferences(session=session, user_id=user.id))
        if not text:
            await message.reply_text(rt.quiet_status(current, zone.key))
            return
        try:
            quiet = parse_quiet(text)
        except ParseError as exc:
            await message.reply_text(rt.quiet_problem(exc.message))
            return
        with new_session(self.deps.engine) as session:
            repo.set_quiet_hours(
                session=session, user_id=user.id, quiet=quiet, now=self.deps.clock()
            )
        await message.reply_text(rt.QUIET_OFF if quiet is None else rt.quiet_set(quiet, zone.key))

    # --- the buttons on a reminder message ------------------------------------------------------

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
        with new_session(self.deps.engine) as session:
            problem, line, until = self._answer_occurrence(
                session, user.id, occurrence_id, action, minutes, now
            )
        if problem is not None:
            await query.answer(problem, show_alert=True)
            return
        if until is not None:
            self.deps.wake(until)
        await query.answer()
        await _append(update, line)

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

    # --- shared --------------------------------------------------------------------------------

    def _zone(self, session: Session, user_id: int) -> _Zone:
        user = repo.get_user(session=session, user_id=user_id)
        key = user.timezone if user is not None and user.timezone else None
        default = self.deps.settings.default_tz
        return _Zone(key or default, repo.user_zone(user, default), assumed=key is None)

    def _next_text(self, reminder: Reminder, zone: _Zone, now: datetime) -> str | None:
        if reminder.next_due_at is None:
            return None
        return rt.when(reminder.next_due_at, now, zone.tz)


def _parse_days_answer(text: str, times: tuple[time, ...], today: date) -> Rule:
    """Days typed at the days step; a line with its own time replaces the times too."""
    try:
        return parse_remind(f"x {text}", today=today).rule
    except ParseError:
        at = ",".join(rt.hhmm(t) for t in times)
        return parse_remind(f"x {at} {text}", today=today).rule


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


def _key_of(name: str) -> str | None:
    """The zone key a suggested name stands for."""
    try:
        return resolve_timezone(name).key
    except TimezoneError:
        return None


def _zone_for_key(key: str) -> ResolvedZone | None:
    """A stored or suggested key as a zone to set, or None when it is not a zone."""
    try:
        tz = zone_from_key(key)
    except ValueError:
        return None
    try:
        resolved = resolve_timezone(key)
    except TimezoneError:
        resolved = None
    if resolved is not None and resolved.key == key:
        return resolved
    return ResolvedZone(key, tz, rt.zone_name(key), fixed_offset=False)


def _command_text(message: Message) -> str:
    """What follows the command, as typed (context.args would lose the spacing)."""
    parts = (message.text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def _message(update: Update) -> Message:
    message = update.effective_message
    if message is None:
        raise ValueError("handler registered for message updates got none")
    return message


def _chat(update: Update) -> Chat:
    chat = update.effective_chat
    if chat is None:
        raise ValueError("handler registered for chat updates got none")
    return chat


async def _reply(message: Message, shown: tuple[str, ReplyMarkup | None]) -> None:
    text, markup = shown
    await message.reply_text(text, reply_markup=markup)


async def _send(chat: Chat, shown: tuple[str, ReplyMarkup | None]) -> None:
    text, markup = shown
    await chat.send_message(text, reply_markup=markup)


async def _append(update: Update, line: str, *, replacing: str = "") -> None:
    """Keep the pressed message's text, add a line, and take its buttons away.

    A last line equal to ``replacing`` (the question the button answered) gives way.
    """
    query = update.callback_query
    if query is None:
        return
    message = query.message
    before = message.text_html if isinstance(message, Message) and message.text else ""
    if replacing and before.endswith(replacing):
        before = before.removesuffix(replacing).rstrip()
    text = f"{before}\n\n{line}" if before else line
    if len(text) > rt.MAX_MESSAGE:
        text = line
    await show_in_place(update, text, None)
