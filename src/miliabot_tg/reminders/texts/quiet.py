"""Quiet hours, /stop and resuming."""

from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from miliabot_tg.reminders.texts.shared import CB_RESUME_ALL, hhmm, sentence, zone_name
from miliabot_tg.schedule import (
    QuietHours,
    describe_quiet,
)


def _quiet_usage() -> str:
    return (
        "Set them with <code>/quiet 22:00-07:00</code> (also <code>/quiet 10pm-7am</code>), "
        "or switch them off with <code>/quiet off</code>."
    )


def quiet_status(quiet: QuietHours | None, zone: str) -> str:
    """Show the current quiet hours and how to change them."""
    shown = escape(zone_name(zone), quote=False)
    if quiet is None:
        state = "🌙 You have no quiet hours."
    else:
        state = f"🌙 Your quiet hours: {describe_quiet(quiet)} ({shown} time)."
    return (
        f"{state}\n\nNo reminder arrives inside quiet hours; one that falls inside comes "
        f"when they end.\n{_quiet_usage()}"
    )


def quiet_set(quiet: QuietHours, zone: str) -> str:
    """Confirm new quiet hours."""
    shown = escape(zone_name(zone), quote=False)
    return (
        f"🌙 Quiet hours set: {describe_quiet(quiet)} ({shown} time). "
        f"Reminders due inside them arrive at {hhmm(quiet.end)}. "
        "<code>/quiet off</code> switches them off."
    )


QUIET_OFF: Final = "🌙 Quiet hours are off: reminders arrive right on time, day and night."


def quiet_problem(message: str) -> str:
    """Answer quiet hours that could not be read."""
    return f"😕 {sentence(message)} Nothing was changed.\n\n{_quiet_usage()}"


def stopped(count: int) -> tuple[str, InlineKeyboardMarkup]:
    """Confirm /stop and say how to resume."""
    what = "your reminder" if count == 1 else f"all {count} of your reminders"
    text = (
        f"⏸ I've paused {what}. Nothing will arrive until you switch them back on: "
        "send /start or tap the button."
    )
    button = InlineKeyboardButton("▶️ Resume now", callback_data=CB_RESUME_ALL)
    return text, InlineKeyboardMarkup([[button]])


NOTHING_TO_STOP: Final = "You have no reminders to pause. Send /remind to add one."
ALREADY_STOPPED: Final = "Your reminders are already paused. Send /start to switch them back on."


RESUME_OFFER: Final = "⏸ Your reminders are paused."


def resume_offer() -> tuple[str, InlineKeyboardMarkup]:
    """A line for /start when every reminder is paused, with a button to resume."""
    button = InlineKeyboardButton("▶️ Resume reminders", callback_data=CB_RESUME_ALL)
    return RESUME_OFFER, InlineKeyboardMarkup([[button]])


def resumed(count: int, next_title: str | None, next_text: str | None) -> str:
    """Confirm that paused reminders are on again."""
    if count == 0:
        return "▶️ Reminders are on again. You have none yet: send /remind to add one."
    text = "▶️ Your reminder is on again." if count == 1 else "▶️ Your reminders are on again."
    if next_title is not None and next_text is not None:
        text += f" Next: <b>{next_title}</b>, {next_text}."
    return text


ALREADY_RESUMED: Final = "▶️ Your reminders are already on."
