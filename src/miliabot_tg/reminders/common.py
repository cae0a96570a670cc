"""What every reminder flow shares: the typed input the bot waits for, the user's zone,
and small helpers for reading updates and replying.

Typed answers in the middle of a flow (a custom reminder's name, a typed time or days, an
edited rule, a typed city) wait in memory, per user, for at most ``PENDING_TTL``; any
command ends the wait. Everything else lives in the database or in the buttons' data.
"""

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Final, Literal

from sqlmodel import Session
from telegram import (
    Chat,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)

from miliabot_tg import repo
from miliabot_tg.handlers import Context, Deps, show_in_place
from miliabot_tg.models import Reminder
from miliabot_tg.reminders import texts as rt
from miliabot_tg.schedule import Kind, Rule, times_per_week

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove

# A half-finished flow is forgotten after this long, so a later message is a search again.
PENDING_TTL: Final = timedelta(minutes=30)
DAILY_WORDS: Final = re.compile(r"\b(?:daily|every\s*day|each day|all days)\b", re.IGNORECASE)


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
class Zone:
    key: str
    tz: tzinfo
    assumed: bool  # the user never chose it: it is the configured default


class ReminderBase:
    """The state every reminder flow shares: dependencies and the typed input awaited."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._pending: dict[int, Pending] = {}

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

    # --- shared --------------------------------------------------------------------------------

    async def _user_zone(self, user_id: int) -> Zone:
        """The zone the user's reminders are planned in, read off the event loop."""
        return await self.deps.read(user_id, lambda session: self._zone(session, user_id))

    def _zone(self, session: Session, user_id: int) -> Zone:
        user = repo.get_user(session=session, user_id=user_id)
        key = user.timezone if user is not None and user.timezone else None
        default = self.deps.settings.default_tz
        return Zone(key or default, repo.user_zone(user, default), assumed=key is None)

    def _next_text(self, reminder: Reminder, zone: Zone, now: datetime) -> str | None:
        if reminder.next_due_at is None:
            return None
        return rt.when(reminder.next_due_at, now, zone.tz)

    async def _caution_if_needed(self, chat: Chat, kind: str, rule: Rule) -> None:
        per_week = times_per_week(rule)
        if kind == "exfoliate" and per_week > rt.EXFOLIATION_LIMIT:
            await send(chat, rt.exfoliation_caution(per_week))


def command_text(message: Message) -> str:
    """What follows the command, as typed (context.args would lose the spacing)."""
    parts = (message.text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def message_of(update: Update) -> Message:
    message = update.effective_message
    if message is None:
        raise ValueError("handler registered for message updates got none")
    return message


def chat_of(update: Update) -> Chat:
    chat = update.effective_chat
    if chat is None:
        raise ValueError("handler registered for chat updates got none")
    return chat


async def reply(message: Message, shown: tuple[str, ReplyMarkup | None]) -> None:
    text, markup = shown
    await message.reply_text(text, reply_markup=markup)


async def send(chat: Chat, shown: tuple[str, ReplyMarkup | None]) -> None:
    text, markup = shown
    await chat.send_message(text, reply_markup=markup)


async def append_line(update: Update, line: str, *, replacing: str = "") -> None:
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
