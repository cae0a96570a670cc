"""/progress, and the weekly summary the reminder engine sends (its per-kind render hook)."""

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from miliabot_tg import charts, progress_store
from miliabot_tg import progress_texts as pt
from miliabot_tg.db import db_read
from miliabot_tg.dispatch import Claimed, Rendered
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.progress import Progress


async def picture(found: Progress, *, weekly: bool) -> Rendered:
    """The chart and its caption, as the engine or a reply sends it."""
    heading = pt.WEEK_HEADING if weekly else pt.CHART_HEADING
    png = await charts.render_png(found, pt.chart_titles(found), heading)
    return Rendered(pt.caption(found, weekly=weekly), photo=png)


class ProgressHandlers:
    """The /progress command."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /progress; before the unknown-command catch-all."""
        new = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("progress", self.progress, filters=new))

    async def progress(self, update: Update, context: Context) -> None:
        """Send the calendar of the last weeks with a summary, or say how it will fill in."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        now, default_key = self.deps.clock(), self.deps.settings.default_tz
        found = await self.deps.read(
            user.id,
            lambda s: progress_store.load_progress(
                session=s, user_id=user.id, now=now, default_key=default_key
            ),
        )
        if found is None or not found.reminders:
            await message.reply_text(pt.NO_REMINDERS)
            return
        if not found.has_history:
            await message.reply_text(pt.NO_HISTORY)
            return
        shown = await picture(found, weekly=False)
        await message.reply_photo(shown.photo or b"", caption=shown.text, filename="progress.png")


class WeeklySummary:
    """Renders a user's weekly summary when the engine sends its occurrence."""

    def __init__(self, *, engine: Engine, default_tz: str) -> None:
        self.engine = engine
        self.default_tz = default_tz

    async def __call__(self, item: Claimed) -> Rendered | None:
        """The week that ends at the occurrence's Sunday; None (nothing sent) without one."""
        at: datetime = item.scheduled_for
        found = await db_read(
            self.engine,
            lambda s: progress_store.load_progress(
                session=s, user_id=item.user_id, now=at, default_key=self.default_tz
            ),
        )
        if found is None or not any(r.week.total for r in found.reminders):
            # No reminders any more, or none came this week: a summary of nothing would
            # only be noise.
            return None
        return await picture(found, weekly=True)
