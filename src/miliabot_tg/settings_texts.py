"""/settings: what a user can choose, in one message with buttons.

Callback data (all well under Telegram's 64 bytes):

* ``set:ann:off`` / ``set:ann:on``: announcements off or on; the message is redrawn;
* ``set:week:off`` / ``set:week:on``: the weekly progress summary off or on; redrawn too;
* ``set:quiet``: show quiet hours and how to change them (what /quiet shows);
* ``set:uvloc:del``: delete the location kept for UV forecasts; the message is redrawn;
* ``tz:loc``: the /timezone flow's own "tell me your timezone" button, reused as it is;
* ``rm:list:0``: the /reminders list, reused as it is.
"""

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from miliabot_tg.reminders.texts.shared import CB_LIST, CB_ZONE_LOCATION, hhmm, zone_name
from miliabot_tg.schedule import QuietHours, describe_quiet

CB_SETTINGS: Final = "set:"
CB_ANN_OFF: Final = "set:ann:off"
CB_ANN_ON: Final = "set:ann:on"
CB_WEEK_OFF: Final = "set:week:off"
CB_WEEK_ON: Final = "set:week:on"
CB_QUIET: Final = "set:quiet"
CB_TIMEZONE: Final = CB_ZONE_LOCATION
CB_REMINDERS: Final = f"{CB_LIST}list:0"
CB_UV_DELETE: Final = "set:uvloc:del"

NOT_STARTED: Final = "Send /start first, then try /settings again."
SWITCHED_ON: Final = "🔔 Announcements are on."
SWITCHED_OFF: Final = "🔕 No more announcements."


@dataclass(frozen=True)
class SettingsView:
    """A user's choices as /settings shows them."""

    announcements: bool
    zone_key: str
    zone_assumed: bool  # the user never chose a zone: it is the configured default
    local_now: datetime
    quiet: QuietHours | None
    reminders: int
    all_paused: bool
    weekly: bool = True  # the weekly progress summary (on unless turned off)
    # The location kept for UV forecasts ("38.7, -9.1"), if the user agreed to keep one.
    uv_location: str | None = None


def settings_view(view: SettingsView) -> tuple[str, InlineKeyboardMarkup]:
    """The settings message and its buttons."""
    zone = escape(zone_name(view.zone_key), quote=False)
    if view.zone_assumed:
        zone_line = f"🌍 Timezone: <b>{zone}</b>, assumed (you haven't chosen one)"
    else:
        zone_line = f"🌍 Timezone: <b>{zone}</b>"
    zone_line += f", it's {hhmm(view.local_now)} there"
    quiet = describe_quiet(view.quiet) if view.quiet is not None else "none"
    if view.reminders == 0:
        reminders = "none yet (/remind sets one)"
    else:
        reminders = str(view.reminders) + (", all paused" if view.all_paused else "")
    state = "on" if view.announcements else "off"
    text = (
        "⚙️ <b>Your settings</b>\n\n"
        f"🔔 Announcements: <b>{state}</b>\n"
        "<i>Now and then, news about the guide from the people who run me. "
        "Your reminders come either way.</i>\n\n"
        f"{zone_line}\n"
        f"🌙 Quiet hours: {quiet}\n"
        f"⏰ Reminders: {reminders}\n"
        f"📊 Weekly summary: <b>{'on' if view.weekly else 'off'}</b>, Sundays at 19:00"
    )
    if view.uv_location is not None:
        text += f"\n📍 Location for UV forecasts: {view.uv_location} (about 10 km)"
    switch = (
        InlineKeyboardButton("🔕 Turn announcements off", callback_data=CB_ANN_OFF)
        if view.announcements
        else InlineKeyboardButton("🔔 Turn announcements on", callback_data=CB_ANN_ON)
    )
    keyboard = InlineKeyboardMarkup(
        [
            [switch],
            [
                InlineKeyboardButton("🌍 Timezone", callback_data=CB_TIMEZONE),
                InlineKeyboardButton("🌙 Quiet hours", callback_data=CB_QUIET),
            ],
            [InlineKeyboardButton("⏰ My reminders", callback_data=CB_REMINDERS)],
            [
                InlineKeyboardButton("📊 Turn weekly summary off", callback_data=CB_WEEK_OFF)
                if view.weekly
                else InlineKeyboardButton("📊 Turn weekly summary on", callback_data=CB_WEEK_ON)
            ],
            *(
                [[InlineKeyboardButton("📍 Delete my UV location", callback_data=CB_UV_DELETE)]]
                if view.uv_location is not None
                else []
            ),
        ]
    )
    return text, keyboard
