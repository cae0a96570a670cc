"""Constants, callback prefixes and the small pieces every reminder text is built from."""

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from html import escape
from typing import Final

from telegram import (
    InlineKeyboardButton,
)

from miliabot_tg.schedule import (
    DAILY,
    WEEKDAYS,
    WEEKENDS,
    Days,
    EveryNDays,
    WeekdaySet,
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
KIND_ICON: Final[Mapping[str, str]] = {
    "sunscreen": "☀️",
    "moisturize": "💧",
    "exfoliate": "✨",
    "custom": "🔔",
}
KIND_NAME: Final[Mapping[str, str]] = {
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


def code_span(text: str) -> str:
    """Show typed text as code, escaped."""
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
        return f"{KIND_ICON[kind]} {KIND_NAME[kind]}"
    return f"🔔 {escape(label, quote=False)}"


def encode_times(times: Sequence[time]) -> str:
    """``0800,2130`` for callback data."""
    return ",".join(f"{t.hour:02d}{t.minute:02d}" for t in times)


def decode_times(text: str) -> tuple[time, ...]:
    """Inverse of :func:`encode_times`; raises ``ValueError`` on anything else."""
    times = []
    for item in text.split(","):
        if len(item) != 4 or not (item.isascii() and item.isdigit()):
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


def button_rows(
    buttons: list[InlineKeyboardButton], width: int
) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]
