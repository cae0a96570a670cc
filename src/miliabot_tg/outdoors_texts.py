"""Strings and keyboards for UV lines, location consent and outdoor mode.

Callback data (all well under Telegram's 64 bytes):

* ``uv:keep:<lat>:<lon>``: keep this (already rounded) location for UV forecasts;
* ``uv:no``: don't keep it;
* ``out:on``: outdoor mode on (the sunscreen reminder's "I'm outside today");
* ``out:in``: outdoor mode off ("I'm inside now");
* ``out:swim``: a one-off reapply after swimming.

The location travels in the button's data rather than waiting in memory, so the question
still works after a restart and nothing is stored before the user says yes.
"""

from collections.abc import Sequence
from datetime import datetime, tzinfo
from html import escape
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg.outdoors import REAPPLY_EVERY, Place
from miliabot_tg.uv import CREDIT, describe_times, peak_text

CB_UV: Final = "uv:"
CB_UV_KEEP: Final = "uv:keep:"
CB_UV_NO: Final = "uv:no"
CB_OUT: Final = "out:"
CB_OUT_ON: Final = "out:on"
CB_OUT_IN: Final = "out:in"
CB_OUT_SWIM: Final = "out:swim"

OUTSIDE_BUTTON: Final = InlineKeyboardButton("🌳 I'm outside today", callback_data=CB_OUT_ON)
INSIDE_BUTTON: Final = InlineKeyboardButton("🏠 I'm inside now", callback_data=CB_OUT_IN)
SWIM_BUTTON: Final = InlineKeyboardButton("🏊 I'm swimming", callback_data=CB_OUT_SWIM)
OUTDOOR_ROW: Final = (SWIM_BUTTON, INSIDE_BUTTON)


def credit() -> str:
    """The attribution Open-Meteo's licence (CC BY 4.0) asks for, as a small line."""
    return f"<i>{CREDIT}</i>"


def where(place: Place) -> str:
    """ "for Lisbon" or "where you are"."""
    if place.city is None:
        return "where you are"
    return f"for {escape(place.city, quote=False)}"


def consent_question(latitude: float, longitude: float) -> tuple[str, InlineKeyboardMarkup]:
    """Ask whether to keep a shared location (already rounded) for UV forecasts."""
    text = (
        "☀️ May I keep this location for <b>UV forecasts</b>? Your morning sunscreen "
        "reminder would then say how strong the sun gets today, and /outdoors would "
        "remind you to reapply while it matters.\n\n"
        f"<i>I'd keep it rounded to about 10 km ({latitude:.1f}, {longitude:.1f}), and you "
        "can delete it any time in /settings or with /forget.</i>"
    )
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "✅ Yes, keep it", callback_data=f"{CB_UV_KEEP}{latitude:.1f}:{longitude:.1f}"
                ),
                InlineKeyboardButton("No, thanks", callback_data=CB_UV_NO),
            ]
        ]
    )
    return text, keyboard


def location_kept(latitude: float, longitude: float) -> str:
    return (
        f"📍 Kept ({latitude:.1f}, {longitude:.1f}, about 10 km). Your morning sunscreen "
        "reminders will say today's UV. /settings deletes it."
    )


LOCATION_NOT_KEPT: Final = "👍 I haven't kept it. I used it only for your timezone."
LOCATION_DELETED: Final = "📍 Your UV location is deleted."
NOT_STARTED: Final = "Send /start first, then try again."


def morning_line(line: str, place: Place) -> str:
    """The UV line on a morning sunscreen reminder, with its credit."""
    return f"🌞 {escape(line, quote=False)} ({where(place)}).\n{credit()}"


def outdoors_on(
    times: Sequence[datetime], tz: tzinfo, *, place: Place | None, ends: str, fallback: bool
) -> tuple[str, InlineKeyboardMarkup]:
    """Confirm outdoor mode with its plan for the day."""
    lines = [
        "🌳 <b>Outdoor mode is on.</b> Put sunscreen on now if you haven't.",
        f"I'll remind you to reapply at {describe_times(times, tz)}; {ends}.",
    ]
    if fallback:
        lines.append(
            "<i>I have no UV forecast for you right now, so I'll remind you every 2 hours "
            "until 16:00. Share a location with /timezone to follow the real sun.</i>"
        )
    else:
        lines.append(f"<i>Planned from the UV forecast {where(place) if place else ''}.</i>")
        lines.append(credit())
    return "\n".join(lines), InlineKeyboardMarkup([list(OUTDOOR_ROW)])


def ends_text(*, fallback: bool, sunset: datetime | None, last: datetime, tz: tzinfo) -> str:
    """Why the plan stops where it does."""
    if fallback:
        return "then I stop at 16:00"
    if sunset is not None and last + REAPPLY_EVERY >= sunset:
        return f"the sun sets at {sunset.astimezone(tz):%H:%M}"
    return "after that the UV stays below 3, so I stop by myself"


def outdoors_already(times: Sequence[datetime], tz: tzinfo) -> tuple[str, InlineKeyboardMarkup]:
    """Outdoor mode is on already: say what's next."""
    text = (
        "🌳 Outdoor mode is on. Next reapply reminders: "
        f"{describe_times(times[:4], tz)}{' …' if len(times) > 4 else ''}."
    )
    return text, InlineKeyboardMarkup([list(OUTDOOR_ROW)])


def no_need(line: str | None, place: Place | None) -> str:
    """The UV stays below 3 for the rest of today: nothing to plan."""
    text = "😎 The UV stays below 3 for the rest of today, so there's no need to reapply. "
    text += "Enjoy being outside!"
    if line is not None and place is not None:
        text += f"\n{escape(line, quote=False)} ({where(place)}).\n{credit()}"
    return text


TOO_LATE: Final = (
    "🌇 It's late in the day: I have no UV forecast for you, and I'd stop at 16:00 anyway, "
    "so there's nothing to plan. Enjoy the evening!"
)
OUTDOORS_OFF: Final = "🏠 Outdoor mode is off. No more reapply reminders today."
OUTDOORS_WAS_OFF: Final = "🏠 Outdoor mode was already off."


def swim_planned(at: datetime, tz: tzinfo) -> str:
    return (
        "🏊 Have fun! Reapply as soon as you're out of the water and towelled dry. "
        f"Water-resistant sunscreen lasts about 40 minutes in water: I'll remind you at "
        f"{at.astimezone(tz):%H:%M}."
    )


def reapply_message(
    *, uv_now: float | None, last: bool, fallback: bool, place: Place | None
) -> str:
    """The text of a reapply reminder."""
    lines = ["🧴 <b>Time to reapply sunscreen</b>"]
    if uv_now is not None and place is not None:
        lines.append(f"The UV index is about {peak_text(uv_now)} now ({where(place)}).")
    if last:
        lines.append("That's the last one today: outdoor mode ends by itself now.")
    if fallback:
        lines.append("<i>No UV forecast at hand: I remind you every 2 hours until 16:00.</i>")
    elif uv_now is not None:
        lines.append(credit())
    return "\n".join(lines)
