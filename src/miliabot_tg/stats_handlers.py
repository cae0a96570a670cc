"""/stats for operators: the overview `miliabot stats` prints, in the chat.

Anyone else's /stats falls through to the unknown-command answer (see `operators.py`).
"""

from collections.abc import Callable
from html import escape
from typing import Any

from sqlmodel import Session
from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from miliabot_tg import stats
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.operators import operator_commands


class StatsHandlers:
    """The operators' overview."""

    def __init__(self, deps: Deps, version: Callable[[], str] | None = None) -> None:
        self.deps = deps
        # The live content's label; by default a fingerprint of the guide in use.
        self.version = version or (lambda: stats.version_label(*self.deps.live.served()))

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /stats; before the unknown-command catch-all, which non-operators reach."""
        only = operator_commands(self.deps.settings.admin_ids) & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("stats", self.stats, filters=only))

    async def stats(self, update: Update, context: Context) -> None:
        """Send the overview."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        now, version = self.deps.clock(), self.version()

        def read(session: Session) -> stats.Stats:
            return stats.collect(session.connection(), now, content_version=version)

        found = await self.deps.read(user.id, read)
        await message.reply_text(
            f"<b>📊 Overview</b>\n\n{escape(stats.render(found), quote=False)}"
        )
