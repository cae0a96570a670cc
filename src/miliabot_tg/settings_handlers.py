"""/settings: announcements on or off in place; timezone, quiet hours and reminders through
the existing flows (their own buttons and answers, not copies of them)."""

from typing import Any

from sqlmodel import Session
from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, filters

from miliabot_tg import broadcasts, outdoors, progress_store, repo, texts
from miliabot_tg import progress_texts as pt
from miliabot_tg import settings_texts as st
from miliabot_tg.handlers import Context, Deps, show_in_place
from miliabot_tg.outdoors_texts import LOCATION_DELETED
from miliabot_tg.reminders import texts as rt


def _uv_location(session: Session, user_id: int) -> str | None:
    kept = outdoors.get_location(session=session, user_id=user_id)
    return None if kept is None else f"{kept.latitude:.1f}, {kept.longitude:.1f}"


class SettingsHandlers:
    """The /settings message and its own buttons."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /settings and its buttons; before the catch-alls for commands and buttons."""
        new = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("settings", self.settings, filters=new))
        app.add_handler(CallbackQueryHandler(self.button, pattern=rf"^{st.CB_SETTINGS}"))

    def _view(self, session: Session, user_id: int) -> st.SettingsView | None:
        user = repo.get_user(session=session, user_id=user_id)
        if user is None:
            return None
        prefs = repo.get_preferences(session=session, user_id=user_id)
        default = self.deps.settings.default_tz
        zone = repo.user_zone(user, default)
        return st.SettingsView(
            announcements=prefs is None or prefs.announcements,
            zone_key=user.timezone or default,
            zone_assumed=user.timezone is None,
            local_now=self.deps.clock().astimezone(zone),
            quiet=repo.quiet_hours(prefs),
            reminders=len(repo.list_reminders(session=session, user_id=user_id)),
            all_paused=prefs is not None and prefs.reminders_paused,
            weekly=progress_store.weekly_on(session=session, user_id=user_id),
            uv_location=_uv_location(session, user_id),
        )

    async def settings(self, update: Update, context: Context) -> None:
        """Show the user's settings with buttons to change them."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        view = await self.deps.read(user.id, lambda s: self._view(s, user.id))
        if view is None:
            await message.reply_text(st.NOT_STARTED)
            return
        text, keyboard = st.settings_view(view)
        await message.reply_text(text, reply_markup=keyboard)

    async def button(self, update: Update, context: Context) -> None:
        """Switch announcements in place, or show quiet hours; anything else is out of date."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        if query.data in (st.CB_ANN_OFF, st.CB_ANN_ON):
            on, now = query.data == st.CB_ANN_ON, self.deps.clock()

            def switch(session: Session) -> st.SettingsView | None:
                # Idempotent: an old message's button sets what it says, then shows the truth.
                broadcasts.set_announcements(session.connection(), user.id, on, now)
                session.commit()
                return self._view(session, user.id)

            view = await self.deps.write(user.id, switch)
            if view is None:
                await query.answer(st.NOT_STARTED, show_alert=True)
                return
            await query.answer(st.SWITCHED_ON if on else st.SWITCHED_OFF)
            await show_in_place(update, *st.settings_view(view))
        elif query.data in (st.CB_WEEK_OFF, st.CB_WEEK_ON):
            on, now = query.data == st.CB_WEEK_ON, self.deps.clock()
            default_key = self.deps.settings.default_tz

            def weekly(session: Session) -> st.SettingsView | None:
                # Idempotent like the announcements switch: it sets what it says.
                progress_store.set_weekly(
                    session=session, user_id=user.id, on=on, now=now, default_key=default_key
                )
                return self._view(session, user.id)

            view = await self.deps.write(user.id, weekly)
            if view is None:
                await query.answer(st.NOT_STARTED, show_alert=True)
                return
            await query.answer(pt.WEEKLY_ON if on else pt.WEEKLY_OFF)
            await show_in_place(update, *st.settings_view(view))
        elif query.data == st.CB_QUIET:
            view = await self.deps.read(user.id, lambda s: self._view(s, user.id))
            await query.answer()
            if view is None:
                await context.bot.send_message(user.id, st.NOT_STARTED)
                return
            await context.bot.send_message(user.id, rt.quiet_status(view.quiet, view.zone_key))
        elif query.data == st.CB_UV_DELETE:

            def forget_location(session: Session) -> st.SettingsView | None:
                outdoors.delete_location(session=session, user_id=user.id)
                return self._view(session, user.id)

            view = await self.deps.write(user.id, forget_location)
            self.deps.forget_place(user.id)
            await query.answer(LOCATION_DELETED)
            if view is not None:
                await show_in_place(update, *st.settings_view(view))
        else:  # forged, or from a later or earlier version of the bot
            await query.answer(texts.STALE_BUTTON)
