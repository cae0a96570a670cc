"""Users' side of broadcasts: the one-tap switch every announcement carries."""

from typing import Any

from sqlmodel import Session
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, CallbackQueryHandler

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import broadcasts as store
from miliabot_tg.handlers import Context, Deps


class AnnouncementHandlers:
    """Turning operators' announcements off and on again."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register the switch's buttons."""
        app.add_handler(CallbackQueryHandler(self.switch, pattern=r"^ann:(on|off)$"))

    async def switch(self, update: Update, context: Context) -> None:
        """Turn announcements off (or back on) and say so."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        on = query.data == bt.CB_ANNOUNCEMENTS_ON
        now = self.deps.clock()

        def switch(session: Session) -> bool:
            changed = store.set_announcements(session.connection(), user.id, on, now)
            session.commit()
            return changed

        changed = await self.deps.write(user.id, switch)
        await query.answer()
        if not changed:
            await query.get_bot().send_message(user.id, "Send /start first, then try again.")
            return
        if on:
            await query.get_bot().send_message(user.id, bt.ANNOUNCEMENTS_ON)
            return
        again = InlineKeyboardButton("🔔 Turn them back on", callback_data=bt.CB_ANNOUNCEMENTS_ON)
        await query.get_bot().send_message(
            user.id, bt.ANNOUNCEMENTS_OFF, reply_markup=InlineKeyboardMarkup([[again]])
        )
