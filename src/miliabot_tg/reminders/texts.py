"""Every reminder-related string and keyboard. Interpolated user input is HTML-escaped here.

Callback data formats (all well under Telegram's 64 bytes):

* ``rf:start`` / ``rf:cancel``: the /remind button flow, first step / give up;
* ``rf:kind:<kind>``: what (a custom kind then asks for a name);
* ``rf:when:<kind>``: back to the time step;
* ``rf:time:<kind>:<HHMM,...>``: when;
* ``rf:days:<kind>:<HHMM,...>:<days code>``: which days; this one stores the reminder;
* ``rm:list:<page>``, ``rm:pause|resume|edit|del|delyes:<id>:<page>``, ``rm:cancel:<page>``,
  ``rm:resumeall[:<page>]``: /reminders and the global pause;
* ``tz:set:<zone key>``, ``tz:keep:<zone key>``, ``tz:loc``: choosing a timezone (keep
  applies only while none was chosen, so an old question can't undo a later choice);
* ``occ:done:<id>``, ``occ:skip:<id>``, ``occ:snooze:<id>:<minutes>``: a reminder message.

The flow carries its state in the data, so its buttons still work after a restart; only a
custom reminder's name, which may not fit, waits in memory.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from miliabot_tg.content import Guide
from miliabot_tg.schedule import (
    DAILY,
    MAX_LABEL_LENGTH,
    WEEKDAYS,
    WEEKENDS,
    Days,
    EveryNDays,
    QuietHours,
    Rule,
    WeekdaySet,
    describe,
    describe_quiet,
)

MAX_MESSAGE: Final = 4096
# Longer parser and lookup messages (they quote what was typed) are cut to this.
MAX_PROBLEM: Final = 200
# Exfoliating more often than this many times a week earns a caution.
EXFOLIATION_LIMIT: Final = 3
EXFOLIATION_SNIPPET: Final = "gentle-exfoliation"
SNOOZE_CHOICES: Final = (15, 60)
LIST_PAGE_SIZE: Final = 8

CB_FLOW: Final = "rf:"
CB_FLOW_START: Final = "rf:start"
CB_FLOW_CANCEL: Final = "rf:cancel"
CB_LIST: Final = "rm:"
CB_RESUME_ALL: Final = "rm:resumeall"
CB_ZONE: Final = "tz:"
CB_ZONE_SET: Final = "tz:set:"
CB_ZONE_KEEP: Final = "tz:keep:"
CB_ZONE_LOCATION: Final = "tz:loc"
CB_OCCURRENCE: Final = "occ:"
CB_GUIDE_OPEN: Final = "guide:open:"

KINDS: Final = ("sunscreen", "moisturize", "exfoliate", "custom")
_ICON: Final[Mapping[str, str]] = {
    "sunscreen": "☀️",
    "moisturize": "💧",
    "exfoliate": "✨",
    "custom": "🔔",
}
_NAME: Final[Mapping[str, str]] = {
    "sunscreen": "Sunscreen",
    "moisturize": "Moisturize",
    "exfoliate": "Exfoliate",
    "custom": "Something else",
}

# The flow's one-tap choices. Sunscreen goes on in the morning, moisturizer morning and
# evening, exfoliation in the evening and at most a few times a week.
TIME_PRESETS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "sunscreen": (("07:30", "0730"), ("08:00", "0800"), ("08:30", "0830"), ("09:00", "0900")),
    "moisturize": (("08:00 + 21:30", "0800,2130"), ("08:00", "0800"), ("21:30", "2130")),
    "exfoliate": (("20:00", "2000"), ("21:00", "2100"), ("22:00", "2200")),
    "custom": (("08:00", "0800"), ("12:00", "1200"), ("18:00", "1800"), ("21:00", "2100")),
}
_EVERYDAY_PRESETS: Final = (
    ("Every day", "daily"),
    ("Weekdays", "weekdays"),
    ("Weekends", "weekends"),
)
DAY_PRESETS: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "sunscreen": _EVERYDAY_PRESETS,
    "moisturize": _EVERYDAY_PRESETS,
    "exfoliate": (
        ("Every 3 days (gentle, recommended)", "every3"),
        ("Mon & Thu", "mon,thu"),
        ("Tue & Fri", "tue,fri"),
    ),
    "custom": _EVERYDAY_PRESETS,
}
_DAY_CODES: Final[Mapping[str, Days]] = {
    "daily": DAILY,
    "weekdays": WEEKDAYS,
    "weekends": WEEKENDS,
    "mon,thu": WeekdaySet(frozenset({0, 3})),
    "tue,fri": WeekdaySet(frozenset({1, 4})),
}

EXAMPLES: Final = (
    "/remind sunscreen 08:30 daily",
    "/remind moisturize 08:00,21:30 weekdays",
    "/remind exfoliate 21:00 mon,thu",
    "/remind exfoliate 21:00 every 3 days",
    "/remind water 12:00 daily",
)


# --- small pieces -----------------------------------------------------------------------------


def _code(text: str) -> str:
    return f"<code>{escape(text, quote=False)}</code>"


def sentence(text: str) -> str:
    """Escape a friendly message from the parser, cut to a readable length."""
    if len(text) > MAX_PROBLEM:
        text = text[: MAX_PROBLEM - 1].rstrip() + "…"
    return escape(text, quote=False)


def hhmm(moment: datetime | time) -> str:
    """24-hour ``08:30``."""
    return f"{moment.hour:02d}:{moment.minute:02d}"


def zone_name(key: str) -> str:
    """How to show a stored zone key: ``Europe/Berlin``, ``UTC``, ``UTC+05:30``."""
    return f"UTC{key}" if key.startswith(("+", "-")) else key


def when(moment: datetime, now: datetime, tz: tzinfo) -> str:
    """``today at 08:30``, ``tomorrow at 08:30`` or ``Thu 3 Dec at 21:00``, in ``tz``."""
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    if local.date() == today:
        day = "today"
    elif local.date() == today + timedelta(days=1):
        day = "tomorrow"
    else:
        day = f"{local:%a} {local.day} {local:%b}"
        if local.year != today.year:
            day += f" {local.year}"
    return f"{day} at {hhmm(local)}"


def title(kind: str, label: str) -> str:
    """A reminder's name with its icon; a custom one shows the user's escaped label."""
    if kind in ("sunscreen", "moisturize", "exfoliate"):
        return f"{_ICON[kind]} {_NAME[kind]}"
    return f"🔔 {escape(label, quote=False)}"


def encode_times(times: Sequence[time]) -> str:
    """``0800,2130`` for callback data."""
    return ",".join(f"{t.hour:02d}{t.minute:02d}" for t in times)


def decode_times(text: str) -> tuple[time, ...]:
    """Inverse of :func:`encode_times`; raises ``ValueError`` on anything else."""
    times = []
    for item in text.split(","):
        if len(item) != 4 or not item.isdigit():
            raise ValueError(f"bad time {item!r}")
        times.append(time(int(item[:2]), int(item[2:])))
    return tuple(times)


def days_from_code(code: str, today: date) -> Days:
    """The days a flow button stands for; ``every3`` counts from the user's today."""
    if code == "every3":
        return EveryNDays(3, today)
    days = _DAY_CODES.get(code)
    if days is None:
        raise ValueError(f"unknown days code {code!r}")
    return days


def _rows(buttons: list[InlineKeyboardButton], width: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


# --- /remind: usage and answers ------------------------------------------------------------------


def usage() -> str:
    """How to write a one-line reminder, with the examples from the help."""
    examples = "\n".join(_code(e) for e in EXAMPLES)
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
        InlineKeyboardButton(f"{_ICON[k]} {_NAME[k]}", callback_data=f"rf:kind:{k}") for k in KINDS
    ]
    text = (
        "⏰ <b>New reminder</b>\n\nWhat should I remind you about?\n\n"
        "<i>Next time you can also type it in one line, like</i> "
        f"{_code(EXAMPLES[0])}"
    )
    return text, InlineKeyboardMarkup([*_rows(buttons, 2), _flow_nav(None)])


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
    return text, InlineKeyboardMarkup([*_rows(buttons, width), _flow_nav(back)])


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
    return f"😕 {sentence(message)} Try again, like {_code(example)}, or tap a button above."


# --- timezone -----------------------------------------------------------------------------------


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
        "<i>I only use your location to look up the timezone; I don't store it.</i>"
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


# --- /reminders ---------------------------------------------------------------------------------


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
            f"{_code(EXAMPLES[0])}."
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


# --- quiet hours, /stop and resuming ----------------------------------------------------------


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


# --- the reminder message ---------------------------------------------------------------------


def tip_for(guide: Guide, kind: str, occurrence_id: int) -> str | None:
    """A tip for this kind, rotating with each occurrence; None for custom reminders."""
    tips = guide.tips.get(kind)
    if not tips:
        return None
    return tips[occurrence_id % len(tips)]


@dataclass(frozen=True)
class DueReminder:
    """One occurrence about to be sent, as the reminder message shows it."""

    occurrence_id: int
    kind: str
    label: str
    scheduled_local: datetime
    late: bool
    follow_up: bool


# Several reminders due together share a message, up to this many (4 buttons each; Telegram
# allows about a hundred buttons, and a phone shows a dozen rows comfortably).
MAX_GROUPED: Final = 8
_HEADINGS: Final[Mapping[str, str]] = {
    "sunscreen": "☀️ <b>Time for sunscreen!</b>",
    "moisturize": "💧 <b>Time to moisturize</b>",
    "exfoliate": "✨ <b>Exfoliation evening</b>",
}
_ICONS: Final[Mapping[str, str]] = {"sunscreen": "☀️", "moisturize": "💧", "exfoliate": "✨"}
_SHORT_LABEL: Final = 20


def reminder_message(
    *,
    occurrence_id: int,
    kind: str,
    label: str,
    tip: str | None,
    scheduled_local: datetime,
    late: bool,
    follow_up: bool,
) -> tuple[str, InlineKeyboardMarkup]:
    """The message for one reminder: what to do, a tip (already HTML), the answer buttons."""
    item = DueReminder(occurrence_id, kind, label, scheduled_local, late, follow_up)
    return _single_reminder(item, tip)


def reminders_message(
    items: Sequence[DueReminder], tip: str | None
) -> tuple[str, InlineKeyboardMarkup]:
    """The message that reminds: what to do, a tip (already HTML), and the answer buttons.

    One reminder gets its own heading and a row of answers; several due together get one
    message that names them all, with a row of answers for each.
    """
    if len(items) == 1:
        return _single_reminder(items[0], tip)
    names = ", ".join(_name(item) for item in items)
    lines = [f"🔔 <b>Time for: {names}</b>"]
    for item in items:
        line = f"{_ICONS.get(item.kind, '🔔')} {_name(item, capital=True)}"
        if item.follow_up:
            line += " (snoozed)"
        if item.late:
            line += f" <i>(due at {hhmm(item.scheduled_local)}; I was offline)</i>"
        lines.append(line)
    if tip:
        lines.append(f"\n💡 Tip: {tip}")
    rows = [
        [
            InlineKeyboardButton(
                f"✅ {_short(_name(item, capital=True, escaped=False))}",
                callback_data=f"occ:done:{item.occurrence_id}",
            ),
            *_later_buttons(item.occurrence_id, short=True),
        ]
        for item in items
    ]
    return "\n".join(lines), InlineKeyboardMarkup(rows)


def _single_reminder(item: DueReminder, tip: str | None) -> tuple[str, InlineKeyboardMarkup]:
    heading = _HEADINGS.get(item.kind, f"🔔 <b>{escape(item.label, quote=False)}</b>")
    if item.follow_up:
        heading += " (snoozed)"
    lines = [heading]
    if item.late:
        lines.append(f"<i>This was due at {hhmm(item.scheduled_local)}; I was offline.</i>")
    if tip:
        lines.append(f"\n💡 Tip: {tip}")
    done = InlineKeyboardButton("✅ Done", callback_data=f"occ:done:{item.occurrence_id}")
    later = _later_buttons(item.occurrence_id, short=False)
    return "\n".join(lines), InlineKeyboardMarkup([[done], later])


def _later_buttons(occurrence_id: int, *, short: bool) -> list[InlineKeyboardButton]:
    first, second = SNOOZE_CHOICES
    return [
        InlineKeyboardButton(
            "😴 15m" if short else "😴 15 min",
            callback_data=f"occ:snooze:{occurrence_id}:{first}",
        ),
        InlineKeyboardButton(
            "😴 1h" if short else "😴 1 hour",
            callback_data=f"occ:snooze:{occurrence_id}:{second}",
        ),
        InlineKeyboardButton("⏭" if short else "⏭ Skip", callback_data=f"occ:skip:{occurrence_id}"),
    ]


def _name(item: DueReminder, *, capital: bool = False, escaped: bool = True) -> str:
    """What a reminder is called in a list: its kind, or a custom reminder's own label."""
    if item.kind in _HEADINGS:
        return item.kind.capitalize() if capital else item.kind
    return escape(item.label, quote=False) if escaped else item.label


def _short(text: str) -> str:
    return text if len(text) <= _SHORT_LABEL else text[: _SHORT_LABEL - 1] + "…"


OUTCOME_DONE: Final = "✅ Done — nice work!"
OUTCOME_SKIPPED: Final = "⏭ Skipped"


def outcome_snoozed(until: datetime, now: datetime, tz: tzinfo, *, moved_by_quiet: bool) -> str:
    """Say when the follow-up comes: ``at 08:45`` today, else with its day."""
    at = when(until, now, tz).removeprefix("today ")
    if moved_by_quiet:
        return f"😴 That falls in your quiet hours, so I'll remind you again {at}, when they end."
    return f"😴 I'll remind you again {at}."


OCCURRENCE_GONE: Final = "I can't find that reminder any more."
OCCURRENCE_FINISHED: Final[Mapping[str, str]] = {
    "done": "Already marked done. ✅",
    "skipped": "Already skipped.",
    "missed": "That one has passed.",
    "failed": "That one has passed.",
}
STALE_BUTTON: Final = "That button is out of date. Send /reminders to start again."
