"""Thin Telegram callbacks: read the update, call the core, reply."""

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackContext,
    CallbackQueryHandler,
    CommandHandler,
    ExtBot,
    MessageHandler,
    TypeHandler,
    filters,
)

from miliabot_tg import repo, texts
from miliabot_tg.config import Settings
from miliabot_tg.content import Guide
from miliabot_tg.db import new_session
from miliabot_tg.reminders.texts import resume_offer

log = logging.getLogger(__name__)

Context = CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]

# A /start within this long of the first message still counts as a first visit.
FIRST_VISIT = timedelta(minutes=1)
SEARCH_RESULTS = 5
ALERT_EVERY = timedelta(minutes=1)
SUGGESTIONS = 4


@dataclass(frozen=True)
class Deps:
    """What the handlers need from the rest of the program."""

    settings: Settings
    engine: Engine
    guide: Guide
    clock: Callable[[], datetime]
    # Tell the reminder dispatcher that something may now be due at this time.
    wake: Callable[[datetime], None] = lambda _when: None


class Handlers:
    """The bot's callbacks, bound to their dependencies."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._last_alert: datetime | None = None
        self._unreported = 0

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register every handler. Order matters: the first matching handler in a group wins."""
        private = filters.ChatType.PRIVATE
        # Group -1 runs before everything else for every update: remember who wrote.
        app.add_handler(TypeHandler(Update, self.record_user), group=-1)

        app.add_handler(CommandHandler("start", self.start, filters=private))
        app.add_handler(CommandHandler("help", self.help, filters=private))
        app.add_handler(CommandHandler("guide", self.guide, filters=private))
        app.add_handler(CommandHandler("privacy", self.privacy, filters=private))
        app.add_handler(CommandHandler("forget", self.forget, filters=private))
        app.add_handler(CallbackQueryHandler(self.guide_button, pattern=r"^guide:"))
        app.add_handler(CallbackQueryHandler(self.forget_button, pattern=r"^forget:"))
        app.add_handler(CallbackQueryHandler(self.stale_button))
        # After the known commands: any other command in a private chat.
        app.add_handler(MessageHandler(private & filters.COMMAND, self.unknown_command))
        app.add_handler(MessageHandler(private & filters.TEXT, self.search_text))
        app.add_handler(MessageHandler(private & ~filters.StatusUpdate.ALL, self.not_text))
        # Groups and channels: a short pointer to the private chat, only when addressed.
        groups = filters.ChatType.GROUPS | filters.ChatType.CHANNEL
        app.add_handler(MessageHandler(groups & filters.COMMAND, self.group_command))
        app.add_error_handler(self.on_error)

    async def record_user(self, update: Update, context: Context) -> None:
        """Remember the user who wrote in a private chat, and that they may be messaged."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or chat.type != ChatType.PRIVATE:
            return
        with new_session(self.deps.engine) as session:
            repo.touch_user(
                session=session,
                user_id=user.id,
                first_name=user.first_name,
                language_code=user.language_code,
                now=self.deps.clock(),
                default_key=self.deps.settings.default_tz,
            )

    async def start(self, update: Update, context: Context) -> None:
        """Welcome the user, offering to resume their reminders if they paused them all."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        with new_session(self.deps.engine) as session:
            known = repo.get_user(session=session, user_id=user.id)
            prefs = repo.get_preferences(session=session, user_id=user.id)
        returning = known is not None and known.first_seen < self.deps.clock() - FIRST_VISIT
        text = texts.welcome(user.first_name, returning=returning)
        keyboard: InlineKeyboardMarkup | None = None
        if prefs is not None and prefs.reminders_paused:
            offer, keyboard = resume_offer()
            text = f"{text}\n\n{offer}"
        await message.reply_text(text, reply_markup=keyboard)

    async def help(self, update: Update, context: Context) -> None:
        """List what the bot can do."""
        await _message(update).reply_text(texts.help_text())

    async def privacy(self, update: Update, context: Context) -> None:
        """Say what is stored and why."""
        await _message(update).reply_text(texts.privacy_text())

    async def guide(self, update: Update, context: Context) -> None:
        """Open the guide menu, or search it when words follow the command."""
        query = " ".join(context.args or [])
        if query.strip():
            await self._answer_search(_message(update), query)
            return
        text, keyboard = texts.guide_menu(self.deps.guide)
        await _message(update).reply_text(text, reply_markup=keyboard)

    async def search_text(self, update: Update, context: Context) -> None:
        """Treat plain text as a search of the guide."""
        message = _message(update)
        await self._answer_search(message, message.text or "")

    async def _answer_search(self, message: Message, query: str) -> None:
        found = self.deps.guide.search(query, limit=SEARCH_RESULTS)
        if found:
            text, keyboard = texts.search_results(query, found)
        else:
            suggestions = list(self.deps.guide.snippets[:SUGGESTIONS])
            text, keyboard = texts.no_results(query, suggestions)
        await message.reply_text(text, reply_markup=keyboard)

    async def guide_button(self, update: Update, context: Context) -> None:
        """Show the menu or a snippet in place of the message whose button was pressed."""
        query = update.callback_query
        if query is None or query.data is None:
            return
        await query.answer()
        guide = self.deps.guide
        if query.data.startswith(texts.CB_OPEN):
            snippet = guide.get(query.data.removeprefix(texts.CB_OPEN))
            if snippet is not None:
                await show_in_place(update, *texts.snippet_view(guide, snippet))
                return
            text, keyboard = texts.guide_menu(guide)
            await show_in_place(update, f"{texts.TOPIC_GONE}\n\n{text}", keyboard)
            return
        await show_in_place(update, *texts.guide_menu(guide))

    async def forget(self, update: Update, context: Context) -> None:
        """Ask whether to delete the user's data."""
        text, keyboard = texts.forget_question()
        await _message(update).reply_text(text, reply_markup=keyboard)

    async def forget_button(self, update: Update, context: Context) -> None:
        """Delete the user's data if they confirmed."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        await query.answer()
        if query.data == texts.CB_FORGET_YES:
            with new_session(self.deps.engine) as session:
                repo.forget_user(session=session, user_id=user.id)
            await show_in_place(update, texts.FORGOTTEN, None)
        else:
            await show_in_place(update, texts.NOT_FORGOTTEN, None)

    async def stale_button(self, update: Update, context: Context) -> None:
        """Answer a button from an older version of the bot instead of leaving it spinning."""
        query = update.callback_query
        if query is not None:
            await query.answer("That button is out of date. Send /guide to start again.")

    async def unknown_command(self, update: Update, context: Context) -> None:
        """Answer a command the bot does not have."""
        message = _message(update)
        command = (message.text or "").split()[0] if message.text else "/"
        await message.reply_text(texts.unknown_command(command.split("@")[0]))

    async def not_text(self, update: Update, context: Context) -> None:
        """Answer stickers, photos and the like."""
        await _message(update).reply_text(texts.NOT_TEXT)

    async def group_command(self, update: Update, context: Context) -> None:
        """Point people in groups and channels to the private chat."""
        message = update.effective_message
        if message is None:
            return
        await message.reply_text(texts.group_notice(context.bot.username))

    async def on_error(self, update: object, context: Context) -> None:
        """Log the error, tell the user something went wrong, then tell the operators."""
        user = update.effective_user if isinstance(update, Update) else None
        if isinstance(context.error, Forbidden) and user is not None:
            # The user blocked the bot while we were answering: stop writing to them.
            log.info("user %s has blocked the bot", user.id)
            with new_session(self.deps.engine) as session:
                repo.mark_blocked(session=session, user_id=user.id, now=self.deps.clock())
            return
        log.error("error while handling an update", exc_info=context.error)
        if isinstance(update, Update):
            await self._apologise(update)
        # When the database is down every update fails; one note a minute is enough.
        now = self.deps.clock()
        if self._last_alert is not None and now - self._last_alert < ALERT_EVERY:
            self._unreported += 1
            return
        self._last_alert = now
        error = context.error
        summary = f"{type(error).__name__}: {error}" if error else "unknown error"
        note = f"⚠️ Error while handling an update:\n<code>{html.escape(summary[:500])}</code>"
        if self._unreported:
            note += f"\n(and {self._unreported} more since the last note; see the logs)"
            self._unreported = 0
        for admin_id in sorted(self.deps.settings.admin_ids):
            try:
                await context.bot.send_message(admin_id, note)
            except TelegramError:
                log.warning("could not tell operator %s about an error", admin_id)

    async def _apologise(self, update: Update) -> None:
        try:
            if update.callback_query is not None:
                await update.callback_query.answer(texts.SOMETHING_WENT_WRONG, show_alert=True)
            elif update.effective_chat is not None and update.effective_chat.type == "private":
                await update.effective_chat.send_message(texts.SOMETHING_WENT_WRONG)
        except TelegramError:
            log.warning("could not tell the user about an error")


def _message(update: Update) -> Message:
    message = update.effective_message
    if message is None:
        raise ValueError("handler registered for message updates got none")
    return message


async def show_in_place(update: Update, text: str, keyboard: InlineKeyboardMarkup | None) -> None:
    """Replace the pressed message's content; send a new one when it can't be edited."""
    query = update.callback_query
    if query is None:
        return
    try:
        await query.edit_message_text(text, reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" in exc.message:
            return  # The same button pressed twice: nothing to change.
        if query.message is None or update.effective_chat is None:
            raise
        # Too old to edit, or deleted: answer with a fresh message instead.
        await update.effective_chat.send_message(text, reply_markup=keyboard)
