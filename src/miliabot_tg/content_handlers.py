"""Operators' view of the published guide: /content shows the live version and its changes.

Operator commands only: anyone else gets what an unknown command gets (see operators.py).
"""

from dataclasses import dataclass
from html import escape
from typing import Any, Final

from sqlmodel import Session
from telegram import Update
from telegram.ext import Application, CommandHandler

from miliabot_tg import publishing
from miliabot_tg.handlers import Context, Deps
from miliabot_tg.operators import operator_commands
from miliabot_tg.publishing import Changes, Version
from miliabot_tg.texts import MAX_MESSAGE

# Long lists are cut to this many titles each, so the answer stays one message.
MAX_LISTED: Final = 20


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

    async def content(self, update: Update, context: Context) -> None:
        """Show the live content version, who published it when, and what it changed."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        serving, guide = self.deps.live.version, self.deps.live.current

        def read(session: Session) -> ContentState:
            conn = session.connection()
            latest = publishing.latest_number(conn)
            number = serving if serving is not None else latest
            shown = publishing.get_version(conn, number) if number is not None else None
            return ContentState(serving, len(guide.snippets), shown, latest)

        state = await self.deps.read(user.id, read)
        await message.reply_text(content_text(state))


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
