"""What broadcasts look like: to users, and to the operator watching one go out.

Callback data: ``ann:off`` turns a user's announcements off, ``ann:on`` back on. Operators'
buttons are ``bc:<action>:<broadcast id>[:<choice>]`` (at most 40 bytes): ``send``,
``cancel``, ``pause``, ``resume``, ``back``, ``aud`` and ``time`` (a menu, or with a choice
such as ``kind:sunscreen`` or ``10:00``/``now`` the change), and ``list-pause`` and the like
for the buttons on the /broadcasts list, which refresh the list.
"""

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any, Final

from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg.broadcasts import Audience, Progress
from miliabot_tg.content import Guide, Snippet
from miliabot_tg.telegram_html import EntityParseError, parse_html
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


# --- the operator's side: /broadcast, its draft, /broadcasts -------------------------------------

CB_BROADCAST: Final = "bc:"
OPERATOR_COMMANDS: Final = (
    BotCommand("broadcast", "Operators: announce something to users"),
    BotCommand("broadcasts", "Operators: recent broadcasts, pause, resume, cancel"),
    BotCommand("stats", "Operators: users, reminders and broadcasts at a glance"),
    BotCommand("content", "Operators: the guide version users see, and what changed"),
    BotCommand("whatsnew", "Operators: draft an announcement of new and changed topics"),
)
# Choices offered on the draft's buttons; any other audience or hour works from the CLI.
AUDIENCES: Final = (
    ("All users", Audience()),
    ("Sunscreen reminders", Audience(kind="sunscreen")),
    ("Moisturize reminders", Audience(kind="moisturize")),
    ("Exfoliate reminders", Audience(kind="exfoliate")),
    ("Custom reminders", Audience(kind="custom")),
    ("Active in the last 7 days", Audience(active_days=7)),
    ("Active in the last 30 days", Audience(active_days=30)),
)
LOCAL_HOURS: Final = ("09:00", "10:00", "12:00", "18:00")
SEND, AUDIENCE, TIMING, CANCEL = "📤 Send", "👥 Audience", "🕘 Timing", "✖️ Cancel"
PAUSE, RESUME, BACK, NOW = "⏸ Pause", "▶️ Resume", "« Back", "Now"
EXCERPT: Final = 60  # characters of a broadcast's text in the /broadcasts list

USAGE: Final = (
    "📣 <b>Broadcast to users</b>\n\n"
    "<code>/broadcast your text</code>: your formatting is kept.\n"
    "<code>/broadcast snippet ID</code>: a guide snippet, with a button that opens it.\n"
    "Reply <code>/broadcast</code> to any message (a photo with a caption, say) "
    "to send a copy of it.\n\n"
    "You get a preview and choose the audience and timing before anything is sent. "
    "/broadcasts lists recent ones."
)
NO_TEXT: Final = "That broadcast has no text. Write it after the command: /broadcast Hello!"
PREVIEW_FAILED: Final = "Telegram refused the preview ({reason}), so nothing was drafted."
NOTHING_RECENT: Final = "No broadcasts yet. Send /broadcast to write one."
NO_SUCH: Final = "There is no broadcast #{id}."
CANCELLED_DRAFT: Final = "✖️ Broadcast #{id} was cancelled before it was sent. Nothing went out."


def callback(action: str, broadcast_id: int, choice: str = "") -> str:
    """An operator button's data (at most 40 bytes: ids are database integers)."""
    return f"{CB_BROADCAST}{action}:{broadcast_id}" + (f":{choice}" if choice else "")


def _button(label: str, action: str, broadcast_id: int, choice: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=callback(action, broadcast_id, choice))


def unknown_snippet(snippet_id: str, ids: Sequence[str]) -> str:
    """Answer /broadcast snippet with an id the guide does not have."""
    listed = ", ".join(f"<code>{escape(i, quote=False)}</code>" for i in ids[:40])
    more = f" and {len(ids) - 40} more" if len(ids) > 40 else ""
    which = (
        f"There is no snippet <code>{escape(snippet_id[:64], quote=False)}</code> in the guide."
        if snippet_id
        else "Which snippet? Write its id: <code>/broadcast snippet ID</code>."
    )
    return (
        f"{which} "
        "Snippet ids are the file names in <code>content/</code> without <code>.md</code>. "
        f"They are: {listed}{more}."
    )


def timing_text(local_time: str | None) -> str:
    if local_time is None:
        return "now (each user's quiet hours respected)"
    return f"at {local_time} in each user's own time zone (quiet hours respected)"


def draft_controls(
    broadcast_id: int, audience: Audience, recipients: int, local_time: str | None
) -> tuple[str, InlineKeyboardMarkup]:
    """The draft's control message, under its preview."""
    people = "person" if recipients == 1 else "people"
    text = (
        f"📝 <b>Broadcast #{broadcast_id}</b> is a draft. The preview above is what users get.\n\n"
        f"Audience: {escape(audience.describe(), quote=False)} "
        f"(announcements on): <b>{recipients} {people}</b>\n"
        f"Timing: {timing_text(local_time)}"
    )
    markup = InlineKeyboardMarkup(
        [
            [_button(SEND, "send", broadcast_id)],
            [_button(AUDIENCE, "aud", broadcast_id), _button(TIMING, "time", broadcast_id)],
            [_button(CANCEL, "cancel", broadcast_id)],
        ]
    )
    return text, markup


def audience_menu(broadcast_id: int, current: Audience) -> tuple[str, InlineKeyboardMarkup]:
    """Choose who gets the draft."""
    rows = [
        [
            _button(
                ("✓ " if audience == current else "") + label,
                "aud",
                broadcast_id,
                audience.to_text(),
            )
        ]
        for label, audience in AUDIENCES
    ]
    rows.append([_button(BACK, "back", broadcast_id)])
    return f"👥 Who should get broadcast #{broadcast_id}?", InlineKeyboardMarkup(rows)


def timing_menu(broadcast_id: int, current: str | None) -> tuple[str, InlineKeyboardMarkup]:
    """Choose when the draft goes out."""
    mark = "✓ "
    rows = [[_button((mark if current is None else "") + NOW, "time", broadcast_id, "now")]]
    rows += [
        [
            _button((mark if hour == current else "") + f"{hour} local", "time", broadcast_id, hour)
            for hour in LOCAL_HOURS[i : i + 2]
        ]
        for i in range(0, len(LOCAL_HOURS), 2)
    ]
    rows.append([_button(BACK, "back", broadcast_id)])
    text = (
        f"🕘 When should broadcast #{broadcast_id} go out? A local hour reaches each user at "
        "that time on their own clock (today if it is still ahead there, else tomorrow)."
    )
    return text, InlineKeyboardMarkup(rows)


def progress_markup(progress: Progress, *, listed: bool = False) -> InlineKeyboardMarkup | None:
    """Pause/resume and cancel, as the broadcast's state allows; none once it is over."""
    prefix = "list-" if listed else ""
    row = []
    if progress.status == "running":
        row.append(_button(PAUSE, prefix + "pause", progress.broadcast_id))
    if progress.status == "paused":
        row.append(_button(RESUME, prefix + "resume", progress.broadcast_id))
    if progress.status in ("running", "paused", "draft"):
        row.append(_button(CANCEL, prefix + "cancel", progress.broadcast_id))
    return InlineKeyboardMarkup([row]) if row else None


def excerpt(row: Any) -> str:
    """A broadcast's body in a few words, escaped."""
    if row.body == "snippet":
        return f"snippet <code>{escape(row.snippet_id or '', quote=False)}</code>"
    if row.body == "copy":
        return "a copy of a message"
    try:
        plain = parse_html(row.text or "")[0]
    except EntityParseError:  # stored before it was checked: show it as it is
        plain = row.text or ""
    line = " ".join(plain.split())
    if len(line) > EXCERPT:
        line = line[: EXCERPT - 1].rstrip() + "…"
    return f"“{escape(line, quote=False)}”"


def broadcast_list(rows: Sequence[tuple[Any, Progress]]) -> tuple[str, InlineKeyboardMarkup | None]:
    """/broadcasts: the latest ones, newest first, each with the buttons its state allows."""
    if not rows:
        return NOTHING_RECENT, None
    lines = ["📣 <b>Recent broadcasts</b>", ""]
    buttons: list[list[InlineKeyboardButton]] = []
    for row, progress in rows:
        counts = f"sent {progress.sent}, left {progress.left}" if row.status != "draft" else ""
        lines.append(
            f"<b>#{row.id}</b> · {row.status} · {excerpt(row)}" + (f" · {counts}" if counts else "")
        )
        markup = progress_markup(progress, listed=True)
        if markup is not None:
            (actions,) = markup.inline_keyboard
            buttons.append(
                [
                    InlineKeyboardButton(f"{b.text} #{row.id}", callback_data=b.callback_data)
                    for b in actions
                ]
            )
    return "\n".join(lines), InlineKeyboardMarkup(buttons) if buttons else None


def wrong_state(broadcast_id: int, status: str, action: str) -> str:
    """A button pressed on a broadcast whose state no longer allows it (short: an answer)."""
    state = "a draft" if status == "draft" else status
    return f"Broadcast #{broadcast_id} is {state}: it can't be {action} now."


def started(broadcast_id: int, recipients: int) -> str:
    if not recipients:
        return f"Broadcast #{broadcast_id} had nobody to go to, so it is done."
    people = "person" if recipients == 1 else "people"
    return f"Broadcast #{broadcast_id} is on its way to {recipients} {people}."
