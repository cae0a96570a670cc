"""Thin Telegram callbacks: read the update, call the core, reply."""

import asyncio
import html
import logging
import secrets
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session
from telegram import ChatMember, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackContext,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ExtBot,
    MessageHandler,
    TypeHandler,
    filters,
)

from miliabot_tg import repo, texts
from miliabot_tg.config import Settings
from miliabot_tg.content import Guide
from miliabot_tg.db import db_read, db_write
from miliabot_tg.models import Reminder
from miliabot_tg.publishing import LiveGuide
from miliabot_tg.reminders.texts import resume_offer

log = logging.getLogger(__name__)

Context = CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]
T = TypeVar("T")

# A /start within this long of the first message still counts as a first visit.
FIRST_VISIT = timedelta(minutes=1)
SEARCH_RESULTS = 5
ALERT_EVERY = timedelta(minutes=1)
SUGGESTIONS = 4
# A visit found to change nothing is not looked up again for this long: people write in
# bursts, and each lookup is a database round trip on every message. So another process's
# /forget (or mark of a block) is noticed by this one's visits after at most this long;
# unblocking always goes through (it comes as a membership update, never skipped).
SEEN_FOR: Final = timedelta(seconds=60)
# Users remembered as seen at most; the longest-unseen are dropped first.
MAX_SEEN: Final = 20_000
_PACKAGE_DIR: Final = Path(__file__).resolve().parent


class Visits:
    """Writes recording who wrote, in flight, so a user's later database work runs after;
    and who was seen lately with nothing to record (see SEEN_FOR)."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Task[None]] = {}
        # user id -> (first name, language, when the database last agreed with them)
        self._seen: dict[int, tuple[str, str | None, datetime]] = {}

    def seen_lately(self, user_id: int, name: str, language: str | None, now: datetime) -> bool:
        """Whether this visit is known to change nothing, without asking the database."""
        seen = self._seen.get(user_id)
        return seen is not None and seen[:2] == (name, language) and now - seen[2] < SEEN_FOR

    def note_seen(self, user_id: int, name: str, language: str | None, now: datetime) -> None:
        """The database now has this user active, with this name and language."""
        self._seen.pop(user_id, None)  # re-inserted last: the dict stays oldest-first
        self._seen[user_id] = (name, language, now)
        if len(self._seen) > MAX_SEEN:
            del self._seen[next(iter(self._seen))]

    def drop(self, user_id: int) -> None:
        """Forget that the user was seen: their row changed (forgotten, blocked)."""
        self._seen.pop(user_id, None)

    def start(self, user_id: int, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run the write in the background; it is the one this user's next work waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending[user_id] = task
        task.add_done_callback(lambda done: self._finished(user_id, done))
        return task

    def _finished(self, user_id: int, task: asyncio.Task[None]) -> None:
        if self._pending.get(user_id) is task:
            del self._pending[user_id]

    async def recorded(self, user_id: int) -> None:
        """Wait until the user's latest visit is written (or has failed: that was logged)."""
        task = self._pending.get(user_id)
        if task is not None:
            await asyncio.wait({task})


class _ServedGuide:
    """`Deps.guide`: given a Guide (or a LiveGuide); read, the guide being served now."""

    def __get__(self, deps: "Deps | None", _owner: object = None) -> Guide:
        if deps is None:
            raise AttributeError("guide")  # tells dataclasses the field has no default
        return deps.live.current

    def __set__(self, deps: "Deps", guide: "Guide | LiveGuide") -> None:
        # Read by __post_init__; `replace()` hands over the live one in `_live` instead.
        deps.__dict__["_given"] = guide


@dataclass(frozen=True)
class Deps:
    """What the handlers need from the rest of the program."""

    settings: Settings
    engine: Engine
    # A descriptor whose class access raises gives no default (dataclasses' "descriptor-
    # typed fields"), so `guide` stays required; mypy takes it for a default.
    guide: _ServedGuide = _ServedGuide()
    clock: Callable[[], datetime]  # type: ignore[misc]
    # Tell the reminder dispatcher that something may now be due at this time.
    wake: Callable[[datetime], None] = lambda _when: None
    # Tell the broadcaster that a broadcast was started or resumed.
    wake_broadcasts: Callable[[], None] = lambda: None
    # Tell the UV forecasts to stop using a user's place (their location was deleted).
    forget_place: Callable[[int], None] = lambda _user_id: None
    visits: Visits = field(default_factory=Visits)
    # The guide in service, following published versions; made from `guide` when not given.
    _live: LiveGuide | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._live is None:
            given = self.__dict__["_given"]
            live = given if isinstance(given, LiveGuide) else LiveGuide(given)
            object.__setattr__(self, "_live", live)

    @property
    def live(self) -> LiveGuide:
        """The holder of the guide in service (see publishing.LiveGuide)."""
        assert self._live is not None
        return self._live

    async def read(self, user_id: int, work: Callable[[Session], T]) -> T:
        """Run a read for this user off the event loop, after their visit is recorded."""
        await self.visits.recorded(user_id)
        return await db_read(self.engine, work)

    async def write(self, user_id: int, work: Callable[[Session], T]) -> T:
        """Run a write for this user off the event loop, after their visit is recorded."""
        await self.visits.recorded(user_id)
        return await db_write(self.engine, work)


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
        # The user blocked or unblocked the bot (a private chat's membership changed).
        app.add_handler(ChatMemberHandler(self.membership, ChatMemberHandler.MY_CHAT_MEMBER))

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
        if update.my_chat_member is not None:
            return  # not a visit: blocking the bot is no sign they want messages (membership)
        if self.deps.visits.seen_lately(
            user.id, user.first_name, user.language_code, self.deps.clock()
        ):
            return
        # Written in the background: the answer never waits for it (on a busy SQLite a
        # write can wait its turn for the lock, and its thread for the GIL, for tens of
        # milliseconds), while this user's own database work still comes after it
        # (Deps.read and Deps.write wait for it).
        self.deps.visits.start(
            user.id, self._record_visit(user.id, user.first_name, user.language_code)
        )

    async def _record_visit(self, user_id: int, name: str, language: str | None) -> None:
        """Write down a visit if it changes anything; a failure is logged, never raised."""
        engine, now = self.deps.engine, self.deps.clock()
        default_key = self.deps.settings.default_tz
        try:
            if await db_read(
                engine,
                lambda s: repo.visit_is_news(
                    session=s, user_id=user_id, first_name=name, language_code=language, now=now
                ),
            ):
                await db_write(
                    engine,
                    lambda s: repo.touch_user(
                        session=s,
                        user_id=user_id,
                        first_name=name,
                        language_code=language,
                        now=now,
                        default_key=default_key,
                    ),
                )
            self.deps.visits.note_seen(user_id, name, language, now)
        except Exception:
            # The answer must neither fail nor apologise for this; the next visit tries again.
            log.warning("could not record a visit of user %s", user_id, exc_info=True)

    async def membership(self, update: Update, context: Context) -> None:
        """Stop reminders at once when the user blocks the bot; resume when they unblock it."""
        change, user = update.my_chat_member, update.effective_user
        if change is None or user is None or change.chat.type != ChatType.PRIVATE:
            return
        status, now = change.new_chat_member.status, self.deps.clock()
        if status == ChatMember.BANNED:  # "kicked": the user blocked the bot
            log.info("user %s has blocked the bot", user.id)
            await self.deps.write(
                user.id, lambda s: repo.mark_blocked(session=s, user_id=user.id, now=now)
            )
            self.deps.visits.drop(user.id)  # after: a visit in flight lands first
        elif status == ChatMember.MEMBER:  # unblocked (or restarted) the bot
            default_key = self.deps.settings.default_tz

            def unblock(session: Session) -> list[Reminder]:
                return repo.unblock_user(
                    session=session, user_id=user.id, now=now, default_key=default_key
                )

            due = [r.next_due_at for r in await self.deps.write(user.id, unblock) if r.next_due_at]
            if due:
                self.deps.wake(min(due))

    async def start(self, update: Update, context: Context) -> None:
        """Welcome the user, offering to resume their reminders if they paused them all."""
        message, user = _message(update), update.effective_user
        if user is None:
            return
        known, prefs = await self.deps.read(
            user.id,
            lambda s: (
                repo.get_user(session=s, user_id=user.id),
                repo.get_preferences(session=s, user_id=user.id),
            ),
        )
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
        found = self.deps.guide.find(query, limit=SEARCH_RESULTS)
        if found.matches:
            text, keyboard = texts.search_results(query, found.matches)
        elif found.closest:
            # Nothing answers it well: say so, and offer the nearest topics as just that.
            text, keyboard = texts.closest_topics(query, found.closest[:SUGGESTIONS])
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
        guide, data = self.deps.guide, query.data
        shown: tuple[str, InlineKeyboardMarkup] | None
        if data.startswith(texts.CB_OPEN):
            snippet = guide.get(data.removeprefix(texts.CB_OPEN))
            shown = texts.snippet_view(guide, snippet) if snippet is not None else None
        elif data.startswith(texts.CB_SECTION):
            shown = texts.section_view(guide, data.removeprefix(texts.CB_SECTION))
        else:
            shown = texts.guide_menu(guide)
        if shown is None:  # a topic or section no longer in the guide: the menu again
            text, keyboard = texts.guide_menu(guide)
            shown = (f"{texts.TOPIC_GONE}\n\n{text}", keyboard)
        await show_in_place(update, *shown)

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
            now = self.deps.clock()
            await self.deps.write(
                user.id, lambda s: repo.forget_user(session=s, user_id=user.id, now=now)
            )
            self.deps.visits.drop(user.id)  # after: a visit in flight lands first
            self.deps.forget_place(user.id)
            await show_in_place(update, texts.FORGOTTEN, None)
        else:
            await show_in_place(update, texts.NOT_FORGOTTEN, None)

    async def stale_button(self, update: Update, context: Context) -> None:
        """Answer a button from an older version of the bot instead of leaving it spinning."""
        query = update.callback_query
        if query is not None:
            await query.answer(texts.STALE_BUTTON)

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
            now = self.deps.clock()
            await self.deps.write(
                user.id, lambda s: repo.mark_blocked(session=s, user_id=user.id, now=now)
            )
            self.deps.visits.drop(user.id)  # after: a visit in flight lands first
            return
        error = context.error
        # The operator's note carries no message text: a database error's message quotes
        # the rows it was writing (names, reminder labels). The reference finds the full
        # traceback in the log.
        reference = secrets.token_hex(4)
        place = where(error) if error is not None else "unknown place"
        log.error("error %s while handling an update, at %s", reference, place, exc_info=error)
        if isinstance(update, Update):
            await self._apologise(update)
        # When the database is down every update fails; one note a minute is enough.
        now = self.deps.clock()
        if self._last_alert is not None and now - self._last_alert < ALERT_EVERY:
            self._unreported += 1
            return
        self._last_alert = now
        kind = error_type(error) if error is not None else "unknown error"
        note = (
            f"⚠️ {html.escape(kind)} while handling an update\n"
            f"at <code>{html.escape(place)}</code>\n"
            f"reference <code>{reference}</code> (in the log, with the traceback)"
        )
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


def error_type(error: BaseException) -> str:
    """The exception's class, qualified by its module unless it is a builtin."""
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def where(error: BaseException) -> str:
    """Say where in our own code an error happened, without any of its data.

    The outermost frame of ours is the callback that was running, the innermost the line
    that failed (often a query in repo.py): "handlers.py:120 in start > repo.py:42 in touch".
    """
    ours = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).resolve().is_relative_to(_PACKAGE_DIR)
    ]
    if not ours:
        return "outside the bot's code"
    places = [ours[0], ours[-1]] if len(ours) > 1 else ours[:1]
    return " > ".join(
        f"{Path(f.filename).resolve().relative_to(_PACKAGE_DIR).as_posix()}:{f.lineno} in {f.name}"
        for f in places
    )


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
