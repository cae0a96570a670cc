"""Operators' broadcasts from Telegram: /broadcast drafts one, its buttons send it, /broadcasts.

Every command is filtered on the operator (anyone else falls through to the unknown-command
answer) and every button checks the operator again before anything else: a button press is
never trusted for who may press it, nor for which broadcast it names.
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any, Final, TypeVar

from sqlalchemy.engine import Connection, Engine
from telegram import CallbackQuery, InlineKeyboardMarkup, Message, MessageEntity, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ExtBot, filters

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import broadcasts as store
from miliabot_tg import texts
from miliabot_tg.broadcaster import Body, deliver
from miliabot_tg.broadcasts import Audience, BroadcastError
from miliabot_tg.handlers import Context, Deps, show_in_place
from miliabot_tg.models import BroadcastStatus
from miliabot_tg.operators import is_operator, operator_commands, refuse_button
from miliabot_tg.telegram_html import utf16_len

log = logging.getLogger(__name__)
T = TypeVar("T")

_CALLBACK: Final = re.compile(
    r"bc:(send|cancel|pause|resume|back|aud|time|list-pause|list-resume|list-cancel)"
    r":([0-9]{1,12})(?::(.{1,24}))?"
)
_PRE_LANGUAGE: Final = re.compile(r'<pre><code class="(?!language-)')
_SNIPPET: Final = re.compile(r"snippet(?:\s+(\S+))?", re.IGNORECASE)
DRAFT: Final = BroadcastStatus.DRAFT.value


async def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one transaction, off the event loop."""

    def run() -> T:
        with engine.begin() as conn:
            return work(conn)

    return await asyncio.to_thread(run)


async def offer_draft(
    deps: Deps, bot: ExtBot[Any], message: Message, body: Body, *, created_by: int
) -> None:
    """Preview `body` exactly as users will get it, record it as a draft, offer the controls.

    Every way of drafting a broadcast ends here (/broadcast, /whatsnew), so every draft is
    previewed by the broadcaster's own send and started by the same buttons. A body that
    Telegram refuses to show (a message that can't be copied) is not recorded.
    """
    try:
        await deliver(bot, message.chat_id, body, deps.guide)
    except BadRequest as exc:
        reason = escape(exc.message, quote=False)
        await message.reply_text(bt.PREVIEW_FAILED.format(reason=reason))
        return
    now = body.started_at

    def draft(conn: Connection) -> tuple[int, int]:
        broadcast_id = store.create_draft(
            conn,
            created_by=created_by,
            now=now,
            text=body.text,
            snippet_id=body.snippet_id,
            source=body.source,
            snippet_ids=body.snippet_ids,
        )
        return broadcast_id, store.count_audience(conn, Audience(), now)

    broadcast_id, recipients = await in_transaction(deps.engine, draft)
    text, markup = bt.draft_controls(broadcast_id, Audience(), recipients, None)
    await message.reply_text(text, reply_markup=markup)


def text_after_command(message: Message) -> str:
    """The operator's text after the command, as Telegram HTML with their formatting kept.

    Entity offsets count UTF-16 code units, so the cut is measured in them too; formatting
    that straddles the command is clipped to the text that stays.
    """
    text = message.text or ""
    command = next(
        (e for e in message.entities if e.type == MessageEntity.BOT_COMMAND and e.offset == 0),
        None,
    )
    end = len(text.encode("utf-16-le")[: 2 * command.length].decode("utf-16-le")) if command else 0
    rest = text[end:].lstrip()
    cut = utf16_len(text[: len(text) - len(rest)])
    kept = []
    for entity in message.entities:
        if entity is command:
            continue
        start, stop = max(entity.offset - cut, 0), entity.offset + entity.length - cut
        if stop > start:
            kept.append(
                MessageEntity(
                    entity.type,
                    start,
                    stop - start,
                    url=entity.url,
                    user=entity.user,
                    language=entity.language,
                    custom_emoji_id=entity.custom_emoji_id,
                )
            )
    trimmed = Message(message.message_id, message.date, message.chat, text=rest, entities=kept)
    # PTB writes a code block's language as class="python"; Telegram reads "language-python".
    # Text is escaped, so this markup can only be PTB's own.
    return _PRE_LANGUAGE.sub('<pre><code class="language-', trimmed.text_html).strip()


class BroadcastHandlers:
    """/broadcast, its draft's buttons, and /broadcasts with pause, resume and cancel."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.admin_ids = deps.settings.admin_ids

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register the commands and buttons; before the guide's catch-all handlers."""
        # Not edited messages: editing a /broadcast must not draft a second one.
        only = operator_commands(self.admin_ids) & filters.UpdateType.MESSAGE
        app.add_handler(CommandHandler("broadcast", self.broadcast, filters=only))
        app.add_handler(CommandHandler("broadcasts", self.broadcasts, filters=only))
        app.add_handler(CallbackQueryHandler(self.button, pattern=rf"^{bt.CB_BROADCAST}"))

    async def _db(self, work: Callable[[Connection], T]) -> T:
        return await in_transaction(self.deps.engine, work)

    # --- /broadcast ----------------------------------------------------------------------------

    async def broadcast(self, update: Update, context: Context) -> None:
        """Draft a broadcast: preview it exactly as users will get it, then offer the controls."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not is_operator(self.admin_ids, update):
            return
        html = text_after_command(message)
        words = (message.text or "").split()
        snippet = _SNIPPET.fullmatch(" ".join(words[1:])) if len(words) in (2, 3) else None
        now = self.deps.clock()
        if message.reply_to_message is not None and not html:
            source = (message.chat_id, message.reply_to_message.message_id)
            body = Body("copy", None, None, source, now)
        elif snippet is not None:
            snippet_id = snippet[1] or ""
            if self.deps.guide.get(snippet_id) is None:
                ids = [s.id for s in self.deps.guide.snippets]
                await message.reply_text(bt.unknown_snippet(snippet_id, ids))
                return
            body = Body("snippet", None, snippet_id, None, now)
        elif html:
            body = Body("text", html, None, None, now)
        else:
            await message.reply_text(bt.USAGE)
            return
        await offer_draft(self.deps, context.bot, message, body, created_by=user.id)

    # --- /broadcasts ---------------------------------------------------------------------------

    async def broadcasts(self, update: Update, context: Context) -> None:
        """List recent broadcasts, each with the buttons its state allows."""
        message = update.effective_message
        if message is None or not is_operator(self.admin_ids, update):
            return
        text, markup = await self._db(_listing)
        await message.reply_text(text, reply_markup=markup)

    # --- buttons -------------------------------------------------------------------------------

    def _progress_of(
        self, broadcast_id: int
    ) -> Callable[[Connection], tuple[str, InlineKeyboardMarkup | None]]:
        now = self.deps.clock()
        return lambda conn: _progress(conn, broadcast_id, now)

    async def button(self, update: Update, context: Context) -> None:
        """Act on an operator's button; anyone else's press is answered like a stale button."""
        query = update.callback_query
        if query is None:
            return
        if not is_operator(self.admin_ids, update):
            await refuse_button(update)
            return
        m = _CALLBACK.fullmatch(query.data or "")
        if m is None:
            await query.answer(texts.STALE_BUTTON)
            return
        action, broadcast_id, choice = m[1], int(m[2]), m[3]
        row = await self._db(lambda conn: store.get(conn, broadcast_id))
        if row is None:
            await query.answer(bt.NO_SUCH.format(id=broadcast_id))
            return
        if action == "send":
            await query.answer(await self._send(update, query, row))
        elif action.removeprefix("list-") in ("pause", "resume", "cancel"):
            changed, answer = await self._change(query, row, action.removeprefix("list-"))
            await query.answer(answer)
            if changed:  # the pressed message shows the new state: the list, or the progress
                listed = action.startswith("list-")
                view = _listing if listed else self._progress_of(row.id)
                await show_in_place(update, *await self._db(view))
        else:
            await query.answer(await self._draft_button(update, row, action, choice))

    async def _draft_button(
        self, update: Update, row: Any, action: str, choice: str | None
    ) -> str | None:
        """Audience, Timing and Back on a draft's control message."""
        if row.status != DRAFT:
            if action == "back":
                await show_in_place(update, *await self._db(self._progress_of(row.id)))
                return None
            return bt.wrong_state(row.id, row.status, "changed")
        if action == "aud" and choice is None:
            await show_in_place(update, *bt.audience_menu(row.id, Audience.parse(row.audience)))
            return None
        if action == "time" and choice is None:
            await show_in_place(update, *bt.timing_menu(row.id, row.local_time))
            return None
        now = self.deps.clock()
        audience: Audience | None = None
        local: str | None = row.local_time
        try:
            if action == "aud" and choice is not None:
                audience = Audience.parse(choice)
            elif action == "time" and choice is not None:
                local = None if choice == "now" else store.parse_local_time(choice)
        except BroadcastError:
            return texts.STALE_BUTTON  # a made-up choice, never offered: nothing changes

        def apply(conn: Connection) -> tuple[bool, Any, int]:
            if audience is not None:
                changed = store.set_audience(conn, row.id, audience)
            elif action == "time":
                changed = store.set_local_time(conn, row.id, local)
            else:  # back: nothing to change
                changed = True
            fresh = store.get(conn, row.id)
            assert fresh is not None  # broadcasts are never deleted
            return changed, fresh, store.count_audience(conn, Audience.parse(fresh.audience), now)

        changed, fresh, recipients = await self._db(apply)
        if not changed:  # started or cancelled meanwhile
            await show_in_place(update, *await self._db(self._progress_of(row.id)))
            return bt.wrong_state(row.id, fresh.status, "changed")
        audience = Audience.parse(fresh.audience)
        await show_in_place(
            update, *bt.draft_controls(row.id, audience, recipients, fresh.local_time)
        )
        return None

    async def _send(self, update: Update, query: CallbackQuery, row: Any) -> str:
        """Start a draft; its control message becomes the progress message."""
        if row.status != DRAFT:
            return bt.wrong_state(row.id, row.status, "sent")
        where = query.message
        if where is not None:
            chat_id, message_id = where.chat.id, where.message_id
            await self._db(lambda c: store.set_progress_message(c, row.id, chat_id, message_id))
        now, zone = self.deps.clock(), self.deps.settings.default_tz
        try:
            # Idempotent: a second press (even at the same moment) finds it no longer a draft.
            recipients = await asyncio.to_thread(store.start, self.deps.engine, row.id, now, zone)
        except BroadcastError as exc:
            return str(exc)
        shown = await self._db(self._progress_of(row.id))
        await show_in_place(update, *shown)
        # Another process may have sent it all and edited in its report before that edit
        # landed: look once more, so the message never stays behind on "going out".
        latest = await self._db(self._progress_of(row.id))
        if latest[0] != shown[0]:
            await show_in_place(update, *latest)
        # Woken only now, so this process's own progress edits come after ours.
        self.deps.wake_broadcasts()
        return bt.started(row.id, recipients)

    async def _change(self, query: CallbackQuery, row: Any, action: str) -> tuple[bool, str]:
        """Pause, resume or cancel; keep its progress message in step. Say how it went."""
        now = self.deps.clock()
        changes: dict[str, tuple[Callable[[Connection], bool], str]] = {
            "pause": (lambda c: store.pause(c, row.id), "paused"),
            "resume": (lambda c: store.resume(c, row.id), "resumed"),
            "cancel": (lambda c: store.cancel(c, row.id, now), "cancelled"),
        }
        change, done = changes[action]
        if not await self._db(change):
            fresh = await self._db(lambda c: store.get(c, row.id))
            return False, bt.wrong_state(row.id, fresh.status if fresh else "gone", done)
        if action == "resume":
            self.deps.wake_broadcasts()
        await self._refresh_progress(row, query)
        return True, f"Broadcast #{row.id} {done}."

    async def _refresh_progress(self, row: Any, query: CallbackQuery) -> None:
        """Edit the broadcast's progress message, unless it is the one pressed (edited anyway)."""
        chat_id, message_id = row.progress_chat_id, row.progress_message_id
        pressed = query.message
        if chat_id is None or message_id is None:
            return
        if pressed is not None and (pressed.chat.id, pressed.message_id) == (chat_id, message_id):
            return
        text, markup = await self._db(self._progress_of(row.id))
        with contextlib.suppress(TelegramError):  # deleted, or too old to edit: no matter
            await query.get_bot().edit_message_text(
                text, chat_id=chat_id, message_id=message_id, reply_markup=markup
            )


def _progress(
    conn: Connection, broadcast_id: int, now: datetime
) -> tuple[str, InlineKeyboardMarkup | None]:
    progress = store.progress(conn, broadcast_id)
    if progress is None:
        return bt.NO_SUCH.format(id=broadcast_id), None
    if progress.status == BroadcastStatus.CANCELLED.value and not progress.recipients:
        return bt.CANCELLED_DRAFT.format(id=broadcast_id), None
    return bt.progress_text(progress, now), bt.progress_markup(progress)


def _listing(conn: Connection) -> tuple[str, InlineKeyboardMarkup | None]:
    rows = store.recent(conn)
    pairs = [(row, store.progress(conn, row.id)) for row in rows]
    return bt.broadcast_list([(row, p) for row, p in pairs if p is not None])
