"""/reminders: the list, deleting and editing."""

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from miliabot_tg.reminders.texts.shared import (
    CB_RESUME_ALL,
    EXAMPLES,
    LIST_PAGE_SIZE,
    code_span,
    title,
    zone_name,
)
from miliabot_tg.schedule import (
    Rule,
    describe,
)


@dataclass(frozen=True)
class Listed:
    """One reminder as /reminders shows it."""

    id: int
    kind: str
    label: str
    rule: Rule
    paused: bool
    next_text: str | None  # None: nothing fires (paused, or all paused)


def reminder_list(
    items: Sequence[Listed], *, page: int, zone: str, all_paused: bool, note: str = ""
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of the user's reminders with buttons for each."""
    if not items:
        text = (
            "You have no reminders yet.\n\n"
            "Send /remind to pick one with buttons, or type one line, like "
            f"{code_span(EXAMPLES[0])}."
        )
        return (f"{note}\n\n{text}" if note else text), None
    pages = -(-len(items) // LIST_PAGE_SIZE)
    page = min(max(page, 0), pages - 1)
    first = page * LIST_PAGE_SIZE
    shown = items[first : first + LIST_PAGE_SIZE]
    header = f"⏰ <b>Your reminders</b> ({escape(zone_name(zone), quote=False)} time)"
    if pages > 1:
        header += f", page {page + 1} of {pages}"
    lines = [note, ""] if note else []
    lines.append(header)
    if all_paused:
        lines.append("⏸ <i>All paused with /stop.</i>")
    rows: list[list[InlineKeyboardButton]] = []
    for number, item in enumerate(shown, start=first + 1):
        if item.paused:
            status = "⏸ paused"
        elif item.next_text is not None:
            status = f"next: {item.next_text}"
        else:
            status = "⏸ paused (all)" if all_paused else "not scheduled"
        lines.append(
            f"\n{number}. <b>{title(item.kind, item.label)}</b>\n{describe(item.rule)} · {status}"
        )
        toggle = (
            InlineKeyboardButton(f"▶️ Resume {number}", callback_data=f"rm:resume:{item.id}:{page}")
            if item.paused
            else InlineKeyboardButton(
                f"⏸ Pause {number}", callback_data=f"rm:pause:{item.id}:{page}"
            )
        )
        rows.append(
            [
                toggle,
                InlineKeyboardButton(f"✏️ Edit {number}", callback_data=f"rm:edit:{item.id}:{page}"),
                InlineKeyboardButton(
                    f"🗑 Delete {number}", callback_data=f"rm:del:{item.id}:{page}"
                ),
            ]
        )
    nav = []
    if page > 0:
        nav.append(InlineKeyboardButton("« Previous", callback_data=f"rm:list:{page - 1}"))
    if page < pages - 1:
        nav.append(InlineKeyboardButton("Next »", callback_data=f"rm:list:{page + 1}"))
    if nav:
        rows.append(nav)
    if all_paused:
        rows.append([InlineKeyboardButton("▶️ Resume all", callback_data=f"{CB_RESUME_ALL}:{page}")])
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def delete_question(item: Listed, page: int) -> tuple[str, InlineKeyboardMarkup]:
    """Ask before deleting a reminder."""
    text = f"Delete <b>{title(item.kind, item.label)}</b> ({describe(item.rule)})?"
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Yes, delete it", callback_data=f"rm:delyes:{item.id}:{page}"),
                InlineKeyboardButton("No, keep it", callback_data=f"rm:list:{page}"),
            ]
        ]
    )
    return text, keyboard


def edit_prompt(item: Listed, page: int) -> tuple[str, InlineKeyboardMarkup]:
    """Ask for a reminder's new time and days."""
    text = (
        f"✏️ <b>{title(item.kind, item.label)}</b> is set for {describe(item.rule)}.\n\n"
        "Send the new time and days in one line, like <code>08:00 weekdays</code>, "
        "<code>21:00 mon,thu</code> or <code>07:30,20:00 daily</code>. "
        "Just a time keeps the days."
    )
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("✖️ Cancel", callback_data=f"rm:cancel:{page}")]]
    )
    return text, keyboard


def rule_updated(kind: str, label: str, rule: Rule, next_text: str | None) -> str:
    """Confirm an edited reminder."""
    text = f"✅ Updated: <b>{title(kind, label)}</b>, {describe(rule)}."
    if next_text is not None:
        text += f"\nNext: {next_text}."
    return text + "\nSee them all with /reminders."


DELETED: Final = "🗑 Deleted."
REMINDER_GONE: Final = "That reminder no longer exists."
EDIT_EXAMPLE: Final = "08:00 weekdays"
