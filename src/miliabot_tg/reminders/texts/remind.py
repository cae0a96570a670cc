"""/remind: its usage, its answers and the button flow that builds a reminder."""

from collections.abc import Sequence
from datetime import time
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from miliabot_tg.reminders.texts.shared import (
    CB_FLOW_CANCEL,
    CB_FLOW_START,
    CB_GUIDE_OPEN,
    DAY_PRESETS,
    EXAMPLES,
    EXFOLIATION_LIMIT,
    EXFOLIATION_SNIPPET,
    KIND_ICON,
    KIND_NAME,
    KINDS,
    TIME_PRESETS,
    button_rows,
    code_span,
    encode_times,
    hhmm,
    sentence,
    title,
    zone_name,
)
from miliabot_tg.schedule import (
    MAX_LABEL_LENGTH,
    Rule,
    describe,
)


def usage() -> str:
    """How to write a one-line reminder, with the examples from the help."""
    examples = "\n".join(code_span(e) for e in EXAMPLES)
    return (
        "<b>How to set a reminder</b>\n"
        f"{examples}\n\n"
        "Times are 24-hour <code>HH:MM</code> (also <code>8:30</code>, <code>8am</code>, "
        "<code>9:30pm</code>); days are <code>daily</code>, <code>weekdays</code>, "
        "<code>weekends</code>, day names like <code>mon,thu</code>, or "
        "<code>every N days</code>. Or send /remind alone and pick with buttons."
    )


def remind_problem(message: str) -> str:
    """Answer a /remind line that could not be read."""
    return f"😕 {sentence(message)} Nothing was saved.\n\n{usage()}"


def reminder_added(
    *,
    kind: str,
    label: str,
    rule: Rule,
    zone: str,
    next_text: str | None,
    all_paused: bool,
) -> str:
    """Confirm a new reminder with when it fires next, in the user's zone."""
    lines = [
        f"✅ Reminder set: <b>{title(kind, label)}</b>, {describe(rule)} "
        f"({escape(zone_name(zone), quote=False)} time)."
    ]
    if next_text is not None:
        lines.append(f"Next: {next_text}.")
    elif all_paused:
        lines.append("Your reminders are paused for now; send /start to switch them back on.")
    lines.append("See and change your reminders with /reminders.")
    return "\n".join(lines)


def already_have(kind: str, label: str, rule: Rule) -> str:
    """Answer a reminder that exactly repeats one the user has."""
    return (
        f"You already have that one: <b>{title(kind, label)}</b>, {describe(rule)}. "
        "Nothing new was added; see them all with /reminders."
    )


def too_many(limit: int) -> str:
    """Refuse a reminder beyond the per-user limit."""
    return (
        f"You have {limit} reminders, the most I keep for one person. "
        "Delete one in /reminders first. Nothing was saved."
    )


def exfoliation_caution(per_week: float) -> tuple[str, InlineKeyboardMarkup]:
    """Gently warn about exfoliating more than a few times a week."""
    count = f"{per_week:.1f}".removesuffix(".0")
    text = (
        f"⚠️ A gentle word: that's about {count} exfoliations a week. "
        f"For most skin 1 to {EXFOLIATION_LIMIT} times a week is plenty; more often can "
        "irritate your skin and make milia harder to clear. You can change the days any time "
        "in /reminders."
    )
    button = InlineKeyboardButton(
        "📖 Gentle exfoliation", callback_data=CB_GUIDE_OPEN + EXFOLIATION_SNIPPET
    )
    return text, InlineKeyboardMarkup([[button]])


# --- the /remind button flow -------------------------------------------------------------------


def _flow_nav(back: str | None) -> list[InlineKeyboardButton]:
    nav = [InlineKeyboardButton("✖️ Cancel", callback_data=CB_FLOW_CANCEL)]
    if back is not None:
        nav.insert(0, InlineKeyboardButton("« Back", callback_data=back))
    return nav


def flow_kinds() -> tuple[str, InlineKeyboardMarkup]:
    """The first step: what to be reminded about."""
    buttons = [
        InlineKeyboardButton(f"{KIND_ICON[k]} {KIND_NAME[k]}", callback_data=f"rf:kind:{k}")
        for k in KINDS
    ]
    text = (
        "⏰ <b>New reminder</b>\n\nWhat should I remind you about?\n\n"
        "<i>Next time you can also type it in one line, like</i> "
        f"{code_span(EXAMPLES[0])}"
    )
    return text, InlineKeyboardMarkup([*button_rows(buttons, 2), _flow_nav(None)])


def flow_label() -> tuple[str, InlineKeyboardMarkup]:
    """Ask for a custom reminder's name."""
    text = (
        "🔔 <b>Something else</b>\n\n"
        f"What should I call it? Type a short name (up to {MAX_LABEL_LENGTH} characters), "
        "like <i>vitamin C serum</i> or <i>drink water</i>."
    )
    return text, InlineKeyboardMarkup([_flow_nav(CB_FLOW_START)])


def flow_times(kind: str, label: str) -> tuple[str, InlineKeyboardMarkup]:
    """Ask when, with the kind's usual times one tap away."""
    hint = {
        "sunscreen": "Mornings work best: put it on as the last step before you head out.",
        "moisturize": "Morning and evening is ideal, after cleansing.",
        "exfoliate": "Evenings are best, so your skin can rest overnight.",
        "custom": "",
    }[kind]
    buttons = [
        InlineKeyboardButton(shown, callback_data=f"rf:time:{kind}:{code}")
        for shown, code in TIME_PRESETS[kind]
    ]
    text = (
        f"<b>{title(kind, label)}</b>\n\nWhen? Pick a time or type one, like "
        "<code>07:45</code> or <code>9pm</code> (several: <code>08:00,21:30</code>)."
    )
    if hint:
        text += f"\n<i>{hint}</i>"
    back = CB_FLOW_START if kind != "custom" else "rf:kind:custom"
    width = 2 if kind == "moisturize" else 4
    return text, InlineKeyboardMarkup([*button_rows(buttons, width), _flow_nav(back)])


def flow_days(kind: str, label: str, times: Sequence[time]) -> tuple[str, InlineKeyboardMarkup]:
    """Ask which days, with the kind's usual choices one tap away."""
    encoded = encode_times(times)
    rows = [
        [InlineKeyboardButton(shown, callback_data=f"rf:days:{kind}:{encoded}:{code}")]
        for shown, code in DAY_PRESETS[kind]
    ]
    at = " and ".join(hhmm(t) for t in times)
    text = (
        f"<b>{title(kind, label)}</b> at {at}\n\nWhich days? Pick one or type them, like "
        "<code>mon,wed,fri</code> or <code>every 2 days</code>."
    )
    if kind == "exfoliate":
        text += "\n<i>Once to three times a week is plenty for most skin.</i>"
    return text, InlineKeyboardMarkup([*rows, _flow_nav(f"rf:when:{kind}")])


FLOW_CANCELLED: Final = "Okay, no reminder added. Send /remind whenever you like."
FLOW_EXPIRED: Final = "That's out of date. Send /remind to start again."
LABEL_EMPTY: Final = "Please type a name for the reminder, like <i>drink water</i>."
LABEL_TOO_LONG: Final = (
    f"That name is too long; please keep it to {MAX_LABEL_LENGTH} characters. Try a shorter one."
)


def typed_problem(message: str, example: str) -> str:
    """Answer typed input in the middle of a flow that could not be read."""
    return f"😕 {sentence(message)} Try again, like {code_span(example)}, or tap a button above."
