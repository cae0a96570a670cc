"""What broadcasts look like: to users, and to the operator watching one go out.

Callback data: ``ann:off`` turns a user's announcements off, ``ann:on`` back on.
"""

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg.broadcasts import Progress
from miliabot_tg.content import Guide, Snippet
from miliabot_tg.texts import CB_OPEN

CB_ANNOUNCEMENTS_OFF: Final = "ann:off"
CB_ANNOUNCEMENTS_ON: Final = "ann:on"
OFF_BUTTON: Final = "🔕 No more announcements"

ANNOUNCEMENTS_OFF: Final = (
    "🔕 Okay, no more announcements. Your reminders carry on as before. "
    "You can switch announcements back on in /settings."
)
ANNOUNCEMENTS_ON: Final = "🔔 Announcements are on again."


def off_row() -> list[InlineKeyboardButton]:
    """The one-tap way out that every broadcast message carries."""
    return [InlineKeyboardButton(OFF_BUTTON, callback_data=CB_ANNOUNCEMENTS_OFF)]


def with_off_button(markup: InlineKeyboardMarkup | None = None) -> InlineKeyboardMarkup:
    """Add the announcements-off button under a message's own buttons."""
    rows = [list(row) for row in markup.inline_keyboard] if markup else []
    return InlineKeyboardMarkup([*rows, off_row()])


def snippet_announcement(snippet: Snippet) -> tuple[str, InlineKeyboardMarkup]:
    """Announce a guide snippet, with a button that opens it."""
    text = f"📣 <b>From the milia guide:</b> {escape(snippet.title, quote=False)}"
    open_button = InlineKeyboardButton(
        f"📖 Read: {snippet.title}", callback_data=CB_OPEN + snippet.id
    )
    return text, InlineKeyboardMarkup([[open_button], off_row()])


def snippets_announcement(
    text: str, guide: Guide, snippet_ids: Sequence[str]
) -> tuple[str, InlineKeyboardMarkup]:
    """Announce several guide snippets: the text, then a button opening each one."""
    snippets = [s for s in (guide.get(i) for i in snippet_ids) if s is not None]
    rows = [[InlineKeyboardButton(f"📖 {s.title}", callback_data=CB_OPEN + s.id)] for s in snippets]
    return text, InlineKeyboardMarkup([*rows, off_row()])


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(progress: Progress, now: datetime) -> str:
    """One message, edited in place while a broadcast goes out, and its final report."""
    heading = {
        "running": "📣 Broadcast #{id} is going out",
        "paused": "⏸ Broadcast #{id} is paused",
        "cancelled": "⏹ Broadcast #{id} was cancelled",
        "done": "✅ Broadcast #{id} is done",
        "draft": "📝 Broadcast #{id} is a draft",
    }.get(progress.status, "📣 Broadcast #{id}")
    lines = [
        f"<b>{heading.format(id=progress.broadcast_id)}</b>",
        "",
        f"Sent: {progress.sent} of {progress.recipients}",
        f"Blocked the bot: {progress.blocked}",
        f"Failed: {progress.failed}",
    ]
    if progress.skipped:
        lines.append(f"Skipped: {progress.skipped}")
    if progress.status in ("running", "paused"):
        lines.append(f"Left: {progress.left}")
        eta = progress.seconds_left(now)
        if progress.status == "running" and eta is not None:
            lines.append(f"About {_duration(eta)} to go")
    return "\n".join(lines)
