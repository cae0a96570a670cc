"""/mydata: everything the bot stores about the user, in words, read from the database.

Features with data of their own add a function to `EXTRA` (session, user id -> lines of
Telegram HTML); /forget must delete whatever they list.
"""

from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any, Final

from sqlmodel import Session, col, func, select
from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from miliabot_tg import outdoors, progress_store, repo
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.models import Delivery, Occurrence, Reminder, UserStatus
from miliabot_tg.reminders.texts.shared import title, zone_name
from miliabot_tg.schedule import Rule, describe, describe_quiet

MAX_LISTED: Final = 15
EXTRA: list[Callable[[Session, int], list[str]]] = []
NOT_STARTED: Final = "I store nothing about you. Send /start to begin."


def _day(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}"


def stored_lines(
    *, session: Session, user_id: int, default_key: str, history_days: int
) -> list[str]:
    """Every kind of data kept about the user, one bullet each; empty for nobody."""
    user = repo.get_user(session=session, user_id=user_id)
    if user is None or user.status == UserStatus.DELETED:
        return []
    prefs = repo.get_preferences(session=session, user_id=user_id)
    name = escape(user.first_name, quote=False) or "none"
    zone = (
        escape(zone_name(user.timezone), quote=False)
        if user.timezone
        else f"not chosen ({escape(zone_name(default_key), quote=False)} assumed)"
    )
    lines = [
        f"• Telegram id <code>{user.id}</code>, first name {name}, "
        f"language {escape(user.language_code or 'none', quote=False)}",
        f"• First used {_day(user.first_seen)}, last {_day(user.last_seen)}",
        f"• Timezone: {zone}",
        f"• Quiet hours: {describe_quiet(repo.quiet_hours(prefs))}; all reminders paused: "
        f"{'yes' if prefs is not None and prefs.reminders_paused else 'no'}; "
        f"announcements: {'on' if prefs is None or prefs.announcements else 'off'}",
    ]
    reminders = repo.list_reminders(session=session, user_id=user_id)
    lines.append(f"• Reminders: {len(reminders)}")
    for reminder in reminders[:MAX_LISTED]:
        paused = " (paused)" if reminder.paused else ""
        rule = describe(Rule.from_text(reminder.rule))
        lines.append(f"   – {title(reminder.kind, reminder.label)}, {rule}{paused}")
    if len(reminders) > MAX_LISTED:
        lines.append(f"   – …and {len(reminders) - MAX_LISTED} more (/reminders)")
    weekly = progress_store.weekly_on(session=session, user_id=user_id)
    lines.append(f"• Weekly summary: {'on' if weekly else 'off'}")
    lines.append(_history_line(session, user_id, history_days))
    deliveries = session.exec(
        select(func.count()).select_from(Delivery).where(col(Delivery.user_id) == user_id)
    ).one()
    lines.append(f"• Announcements sent to you: {deliveries} record(s)")
    # Plain text from the UV feature: escaped here.
    lines += [
        f"• {escape(line, quote=False)}"
        for line in outdoors.data_lines(session=session, user_id=user_id)
    ]
    for extra in EXTRA:
        lines += extra(session, user_id)
    return lines


def _history_line(session: Session, user_id: int, history_days: int) -> str:
    """The record behind /progress: how many outcomes, since when, of what kind."""
    rows = session.exec(
        select(Occurrence.status, func.count(), func.min(Occurrence.scheduled_for))
        .join(Reminder, col(Reminder.id) == col(Occurrence.reminder_id))
        .where(
            col(Occurrence.user_id) == user_id,
            col(Reminder.kind) != progress_store.WEEKLY,
        )
        .group_by(col(Occurrence.status))
    ).all()
    total = sum(int(count) for _, count, _ in rows)
    if not total:
        return "• Reminder history (behind /progress): nothing yet"
    since = min(first for _, _, first in rows)
    counts = ", ".join(f"{status} {count}" for status, count, _ in sorted(rows))
    return (
        f"• Reminder history (behind /progress): {total} outcome(s) since {_day(since)} "
        f"({counts}); each is kept {history_days} days"
    )


def mydata_text(lines: list[str]) -> str:
    """The whole answer."""
    if not lines:
        return NOT_STARTED
    body = "\n".join(lines)
    return (
        f"📄 <b>What I store about you</b>\n\n{body}\n\n"
        "/privacy says why; /forget deletes all of it."
    )


class MyDataHandlers:
    """The /mydata command."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /mydata; before the unknown-command catch-all."""
        new = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("mydata", self.mydata, filters=new))

    async def mydata(self, update: Update, context: Context) -> None:
        """Show what is stored about the user."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        settings = self.deps.settings
        lines = await self.deps.read(
            user.id,
            lambda s: stored_lines(
                session=s,
                user_id=user.id,
                default_key=settings.default_tz,
                history_days=settings.history_days,
            ),
        )
        await message.reply_text(mydata_text(lines))
