"""/timezone: the questions and answers about where a user is."""

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from miliabot_tg.reminders.texts.shared import (
    CB_ZONE_KEEP,
    CB_ZONE_LOCATION,
    CB_ZONE_SET,
    hhmm,
    sentence,
    zone_name,
)


def timezone_question(zone: str, local_now: datetime) -> tuple[str, InlineKeyboardMarkup]:
    """Ask a first-time user whether the assumed zone is right."""
    shown = escape(zone_name(zone), quote=False)
    text = (
        f"🌍 I assumed your timezone is <b>{shown}</b> (it's {hhmm(local_now)} there now). "
        "Is that right? Keep it, share your location, or type "
        "<code>/timezone City</code>, like <code>/timezone Lisbon</code>."
    )
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(f"Keep {zone_name(zone)}", callback_data=CB_ZONE_KEEP + zone),
                InlineKeyboardButton("📍 Share my location", callback_data=CB_ZONE_LOCATION),
            ]
        ]
    )
    return text, keyboard


def timezone_prompt(
    zone: str, local_now: datetime, *, assumed: bool
) -> tuple[str, ReplyKeyboardMarkup]:
    """Explain /timezone and offer to share a location."""
    shown = escape(zone_name(zone), quote=False)
    current = (
        f"I'm assuming <b>{shown}</b> for now" if assumed else f"Your timezone is <b>{shown}</b>"
    )
    text = (
        f"🌍 {current} (it's {hhmm(local_now)} there).\n\n"
        "To change it, tap <b>📍 Share my location</b> below (on your phone), or type a city, "
        "like <code>Lisbon</code>. A zone name (<code>/timezone Europe/Berlin</code>) or an "
        "offset (<code>/timezone +05:30</code>) works too.\n\n"
        "<i>I only use your location to look up the timezone; I don't store it unless "
        "you then say yes to keeping it for UV forecasts.</i>"
    )
    keyboard = ReplyKeyboardMarkup(
        [[KeyboardButton("📍 Share my location", request_location=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
        input_field_placeholder="or type a city",
    )
    return text, keyboard


def timezone_set(
    *, name: str, key: str, local_now: datetime, notes: Sequence[str], rescheduled: int
) -> str:
    """Confirm a new timezone with the local time, its caveats and what moved."""
    shown = escape(name, quote=False)
    if zone_name(key) != name:
        shown += f" ({escape(zone_name(key), quote=False)})"
    lines = [f"🌍 Your timezone is now <b>{shown}</b>. It's {hhmm(local_now)} there."]
    lines += [f"<i>{escape(note, quote=False)}</i>" for note in notes]
    if rescheduled == 1:
        lines.append("I moved your reminder to match.")
    elif rescheduled > 1:
        lines.append(f"I moved your {rescheduled} reminders to match.")
    return "\n".join(lines)


def timezone_unknown(
    message: str, suggestions: Sequence[tuple[str, str]]
) -> tuple[str, InlineKeyboardMarkup | None]:
    """Answer an unknown zone; ``suggestions`` are (shown name, zone key) pairs."""
    if not suggestions:
        return (
            f"😕 {sentence(message)} Nothing was changed.\n\n"
            "Try <code>/timezone Lisbon</code>, <code>/timezone Europe/Berlin</code> or "
            "<code>/timezone +05:30</code>, or send /timezone to share your location.",
            None,
        )
    rows = [
        [
            InlineKeyboardButton(
                name if name == zone_name(key) else f"{name} ({zone_name(key)})",
                callback_data=CB_ZONE_SET + key,
            )
        ]
        for name, key in suggestions
    ]
    text = f"😕 {sentence(message)} Nothing was changed yet. Did you mean one of these?"
    return text, InlineKeyboardMarkup(rows)


TIMEZONE_TOO_LONG: Final = (
    "That's too long for a place name. Try a city like <code>/timezone Lisbon</code> "
    "or an offset like <code>/timezone +05:30</code>."
)
LOCATION_UNKNOWN: Final = (
    "😕 I couldn't tell the timezone at that spot. Nothing was changed. "
    "Type a city instead, like <code>/timezone Lisbon</code>."
)


def timezone_already(key: str) -> str:
    """Answer an old "Keep" button after the user chose a zone another way."""
    shown = escape(zone_name(key), quote=False)
    return f"🌍 Your timezone is already set to <b>{shown}</b>. /timezone changes it."


ZONE_GONE: Final = "I don't know that timezone any more. Send /timezone to pick one."
