"""Operators and the published guide: /content shows the live version and its changes,
/whatsnew drafts a broadcast announcing its new and changed topics.

Operator commands only: anyone else gets what an unknown command gets (see operators.py).
"""

from dataclasses import dataclass
from html import escape
from typing import Any, Final

from sqlmodel import Session
from telegram import InlineKeyboardMarkup, Update
from telegram.ext import Application, CommandHandler

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import publishing
from miliabot_tg.broadcast_handlers import offer_draft
from miliabot_tg.broadcaster import Body
from miliabot_tg.content import Guide
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.operators import operator_commands
from miliabot_tg.publishing import Changes, Version
from miliabot_tg.texts import MAX_MESSAGE

# Long lists are cut to this many titles each, so the answer stays one message.
MAX_LISTED: Final = 20
# A /whatsnew announcement opens at most this many topics: a short message on a phone.
MAX_ANNOUNCED: Final = 8


@dataclass(frozen=True)
class ContentState:
    """What /content reports, read in one go."""

    serving: int | None  # the version this bot serves; None: its content folder
    topics: int  # snippets in the guide it serves
    shown: Version | None  # the version served, or the latest while none is
    latest: int | None  # the latest published number


class ContentHandlers:
    """Operator commands about the published guide."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Register /content for operators; before the catch-all for unknown commands."""
        operators = operator_commands(self.deps.settings.admin_ids)
        app.add_handler(CommandHandler("content", self.content, filters=operators))
        app.add_handler(CommandHandler("whatsnew", self.whatsnew, filters=operators))

    async def content(self, update: Update, context: Context) -> None:
        """Show the live content version, who published it when, and what it changed."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        serving, guide = self.deps.live.served()

        def read(session: Session) -> ContentState:
            conn = session.connection()
            latest = publishing.latest_number(conn)
            number = serving if serving is not None else latest
            shown = publishing.get_version(conn, number) if number is not None else None
            return ContentState(serving, len(guide.snippets), shown, latest)

        state = await self.deps.read(user.id, read)
        await message.reply_text(content_text(state))

    async def whatsnew(self, update: Update, context: Context) -> None:
        """Draft a broadcast announcing the live version's new and changed topics."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        number, guide = self.deps.live.served()
        if number is None:
            await message.reply_text(NOTHING_PUBLISHED)
            return
        version = await self.deps.read(
            user.id, lambda s: publishing.get_version(s.connection(), number)
        )
        draft = whatsnew_draft(version.changes, guide) if version is not None else None
        if draft is None:
            await message.reply_text(
                f"Content version {number} adds or changes no topics: nothing to announce."
            )
            return
        text, snippet_ids = draft
        body = Body("snippets", text, None, None, self.deps.clock(), snippet_ids=tuple(snippet_ids))
        await offer_draft(self.deps, context.bot, message, body, created_by=user.id)


NOTHING_PUBLISHED: Final = (
    "No content version is published yet, so there is nothing new to announce. "
    "Publish one with <code>miliabot content publish</code>."
)


def whatsnew_draft(changes: Changes, guide: Guide) -> tuple[str, list[str]] | None:
    """Announce a version's new and changed topics, those still in the guide.

    Returns the text and the ids to give a button each; None when there is nothing new.
    """
    added = [s for s in (guide.get(i) for i in changes.added) if s is not None]
    changed = [s for s in (guide.get(i) for i in changes.changed) if s is not None]
    shown = [*added, *changed][:MAX_ANNOUNCED]
    if not shown:
        return None
    lines = ["📣 <b>What's new in the milia guide</b>", ""]
    for heading, snippets in (("✨ New", added), ("✏️ Updated", changed)):
        listed = [s for s in snippets if s in shown]
        if listed:
            titles = ", ".join(escape(s.title, quote=False) for s in listed)
            lines.append(f"{heading}: {titles}")
    more = len(added) + len(changed) - len(shown)
    if more:
        lines.append(f"… and {more} more in /guide")
    lines += ["", "Tap a topic to read it."]
    return "\n".join(lines), [s.id for s in shown]


def whatsnew_preview(
    text: str, guide: Guide, snippet_ids: list[str]
) -> tuple[str, InlineKeyboardMarkup]:
    """The announcement exactly as the broadcaster will send it to users."""
    return bt.snippets_announcement(text, guide, snippet_ids)


def content_text(state: ContentState) -> str:
    """The /content answer, escaped and within one message."""
    shown = state.shown
    if shown is None:
        return (
            "📚 <b>No content version is published yet.</b>\n\n"
            f"This bot serves the content folder it was started with ({state.topics} topics). "
            "Publish one with <code>miliabot content publish</code>."
        )
    lines = [
        f"📚 <b>Content version {shown.number}</b>"
        + (" is live" if state.serving == shown.number else " is the latest")
        + f": {state.topics} topics served here.",
        f"Published {shown.published_at:%-d %b %Y, %H:%M} UTC by "
        f"<i>{escape(shown.published_by, quote=False)}</i>.",
    ]
    if shown.changes.rollback_of is not None:
        lines.append(f"A rollback: the content of version {shown.changes.rollback_of}.")
    if state.serving != state.latest:
        lines.append(
            f"\n⏳ This bot still serves {_served(state.serving)}; it switches to version "
            f"{state.latest} within seconds (if not, the log says why)."
        )
    lines.append("")
    lines.extend(changes_lines(shown.changes))
    text = "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _served(number: int | None) -> str:
    return f"version {number}" if number is not None else "its content folder"


def changes_lines(changes: Changes) -> list[str]:
    """What a version changed, one titled list per kind of change."""
    lines: list[str] = []
    for heading, ids in (
        ("➕ <b>Added</b>", changes.added),
        ("✏️ <b>Changed</b>", changes.changed),
        ("➖ <b>Removed</b>", changes.removed),
    ):
        if not ids:
            continue
        lines.append(f"{heading} ({len(ids)})")
        lines.extend(f"• {escape(changes.title(i), quote=False)}" for i in ids[:MAX_LISTED])
        if len(ids) > MAX_LISTED:
            lines.append(f"… and {len(ids) - MAX_LISTED} more")
    if changes.tips:
        kinds = ", ".join(escape(kind, quote=False) for kind in changes.tips)
        lines.append(f"💡 <b>Reminder tips changed</b>: {kinds}")
    return lines or ["No topic changed from the version before."]
