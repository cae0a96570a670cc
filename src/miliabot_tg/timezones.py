"""What a user types for ``/timezone`` (or shares as a location), turned into a zone.

Pure policy, no Telegram and no database.  What gets stored is a *key*: an IANA name
(``Europe/Berlin``), ``UTC``, or a fixed offset (``+05:30``); :func:`zone_from_key` and
:func:`zone_key` convert between keys and ``tzinfo`` objects.

City names come from two offline sources: the city part of the IANA names shipped with
tzdata (``Lisbon``, ``New York``, ``Sao Paulo``, ``Kyiv``…), and the curated table
``places.tsv`` beside this module for big cities that no IANA name mentions (``Mumbai``,
``Beijing``, ``San Francisco``…), common old spellings (``Kiev``, ``Calcutta``), and
countries.  Where a name is ambiguous the table picks the most populous place and says
so in the result's notes.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from pathlib import Path
from typing import Final

import tzfpy

from miliabot_tg.schedule import ascii_digits

__all__ = [
    "ResolvedZone",
    "TimezoneError",
    "format_offset",
    "resolve_location",
    "resolve_timezone",
    "timezone_from_location",
    "zone_from_key",
    "zone_key",
]

MAX_OFFSET: Final = timedelta(hours=14)
MIN_OFFSET: Final = timedelta(hours=-12)


class TimezoneError(ValueError):
    """The text is not a zone I know; ``message`` is one short friendly sentence."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions


@dataclass(frozen=True)
class ResolvedZone:
    """A zone picked from what the user typed.

    ``key`` is what to store; ``name`` is what to show (``Lisbon``, ``Europe/Berlin``,
    ``UTC+05:30``); ``fixed_offset`` is true when the zone never changes its offset, so the
    UI can warn that reminders will not follow daylight saving; ``notes`` are short
    sentences about choices made (an ambiguous city, an abbreviation, a fixed offset).
    """

    key: str
    tz: tzinfo = field(compare=False)
    name: str
    fixed_offset: bool
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- keys

_OFFSET_KEY: Final = re.compile(r"^([+-])([0-9]{2}):([0-9]{2})$")
_EXCLUDED_KEYS: Final = frozenset({"localtime", "Factory"})


@cache
def _available_keys() -> frozenset[str]:
    keys = zoneinfo.available_timezones() - _EXCLUDED_KEYS
    return frozenset(k for k in keys if not k.startswith(("posix/", "right/")))


@cache
def _keys_by_lower() -> dict[str, str]:
    return {k.lower(): k for k in _available_keys()}


def format_offset(offset: timedelta) -> str:
    """``+05:30`` / ``-03:00`` for a whole-minute UTC offset."""
    minutes, rest = divmod(offset, timedelta(minutes=1))
    if rest:
        raise ValueError(f"offset {offset!r} is not a whole number of minutes")
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _fixed_zone(offset: timedelta) -> timezone:
    return UTC if not offset else timezone(offset)


def zone_key(tz: tzinfo) -> str:
    """The storable key of a zone: its IANA key, ``UTC``, or ``+05:30``."""
    if isinstance(tz, zoneinfo.ZoneInfo):
        if tz.key is None:
            raise ValueError("a ZoneInfo built from a file has no key")
        return tz.key
    if isinstance(tz, timezone):
        offset = tz.utcoffset(None)
        return "UTC" if not offset else format_offset(offset)
    raise ValueError(f"cannot store a {type(tz).__name__} zone")


def zone_from_key(key: str) -> tzinfo:
    """Inverse of :func:`zone_key`; raises ``ValueError`` for an unknown key."""
    if key == "UTC":
        return UTC
    m = _OFFSET_KEY.match(key)
    if m is not None:
        offset = timedelta(hours=int(m[2]), minutes=int(m[3]))
        offset = -offset if m[1] == "-" else offset
        if not MIN_OFFSET <= offset <= MAX_OFFSET or int(m[3]) > 59:
            raise ValueError(f"offset key out of range: {key!r}")
        return _fixed_zone(offset)
    if key not in _available_keys():
        raise ValueError(f"unknown time zone key: {key!r}")
    return zoneinfo.ZoneInfo(key)


def _is_fixed(tz: tzinfo) -> bool:
    """Whether the zone keeps one offset (checked over a few years around now)."""
    if isinstance(tz, timezone):
        return True
    samples = {
        datetime(year, month, 15, tzinfo=UTC).astimezone(tz).utcoffset()
        for year in (2025, 2026, 2027)
        for month in (1, 4, 7, 10)
    }
    return len(samples) == 1


# --------------------------------------------------------------------------- place names


_LETTERS: Final[dict[str, str | int | None]] = {"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae"}
_TRANSLITERATE: Final = str.maketrans(_LETTERS)


def _normalize(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: ``São Paulo`` → ``sao paulo``."""
    s = unicodedata.normalize("NFKD", text.strip().lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.translate(_TRANSLITERATE)
    s = re.sub(r"['’`]", "", s)
    s = re.sub(r"[\s_\-./,()]+", " ", s).strip()
    return re.sub(r"\bsaint\b", "st", s)


_PLACES_FILE: Final = Path(__file__).with_name("places.tsv")


def _read_place_table(path: Path) -> tuple[tuple[str, str, str | None], ...]:
    """Rows of ``places.tsv`` as (names separated by "|", zone, note or None), in file order."""
    rows: list[tuple[str, str, str | None]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not 2 <= len(fields) <= 3 or not all(fields):
            raise ValueError(f"{path}:{number}: expected zone<TAB>names[<TAB>note], got {line!r}")
        key, names, *note = fields
        rows.append((names, key, note[0] if note else None))
    return tuple(rows)


# Big places that no IANA name mentions, old spellings, countries; the file's header says
# how to read it.  Read at import (about 0.2 ms) so that a package missing the file fails
# at start-up rather than at someone's first /timezone.
_PLACE_TABLE: Final = _read_place_table(_PLACES_FILE)

# Typed IANA names that are old aliases, stored under their current name.
_RENAMED_KEYS: Final[dict[str, str]] = {
    "Europe/Kiev": "Europe/Kyiv",
    "Europe/Uzhgorod": "Europe/Kyiv",
    "Europe/Zaporozhye": "Europe/Kyiv",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Asia/Rangoon": "Asia/Yangon",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Dacca": "Asia/Dhaka",
    "Asia/Ulan_Bator": "Asia/Ulaanbaatar",
    "Asia/Chongqing": "Asia/Shanghai",
    "Asia/Chungking": "Asia/Shanghai",
    "Asia/Harbin": "Asia/Shanghai",
    "Asia/Macao": "Asia/Macau",
    "Asia/Istanbul": "Europe/Istanbul",
    "Europe/Belfast": "Europe/London",
    "America/Godthab": "America/Nuuk",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Indianapolis": "America/Indiana/Indianapolis",
    "US/Eastern": "America/New_York",
    "US/Central": "America/Chicago",
    "US/Mountain": "America/Denver",
    "US/Pacific": "America/Los_Angeles",
    "US/Alaska": "America/Anchorage",
    "US/Hawaii": "Pacific/Honolulu",
    "US/Arizona": "America/Phoenix",
}

# Abbreviations people type; each stands for a zone that follows local daylight saving.
_ABBREVIATIONS: Final[dict[str, tuple[str, str]]] = {
    **dict.fromkeys(("EST", "EDT", "ET"), ("America/New_York", "US Eastern time")),
    **dict.fromkeys(("CST", "CDT", "CT"), ("America/Chicago", "US Central time")),
    **dict.fromkeys(("MST", "MDT", "MT"), ("America/Denver", "US Mountain time")),
    **dict.fromkeys(("PST", "PDT", "PT"), ("America/Los_Angeles", "US Pacific time")),
    **dict.fromkeys(("AKST", "AKDT"), ("America/Anchorage", "Alaska time")),
    "HST": ("Pacific/Honolulu", "Hawaii time"),
    "BST": ("Europe/London", "UK time"),
    **dict.fromkeys(("WET", "WEST"), ("Europe/Lisbon", "Western European time (Lisbon)")),
    **dict.fromkeys(("CET", "CEST"), ("Europe/Berlin", "Central European time (Berlin)")),
    **dict.fromkeys(("EET", "EEST"), ("Europe/Athens", "Eastern European time (Athens)")),
    "MSK": ("Europe/Moscow", "Moscow time"),
    "IST": ("Asia/Kolkata", "India Standard Time"),
    "PKT": ("Asia/Karachi", "Pakistan time"),
    "JST": ("Asia/Tokyo", "Japan time"),
    "KST": ("Asia/Seoul", "Korea time"),
    "SGT": ("Asia/Singapore", "Singapore time"),
    "HKT": ("Asia/Hong_Kong", "Hong Kong time"),
    "PHT": ("Asia/Manila", "Philippine time"),
    "WIB": ("Asia/Jakarta", "Western Indonesia time (Jakarta)"),
    **dict.fromkeys(("AEST", "AEDT"), ("Australia/Sydney", "Australian Eastern time (Sydney)")),
    **dict.fromkeys(("ACST", "ACDT"), ("Australia/Adelaide", "Australian Central time")),
    "AWST": ("Australia/Perth", "Australian Western time"),
    **dict.fromkeys(("NZST", "NZDT"), ("Pacific/Auckland", "New Zealand time")),
    "SAST": ("Africa/Johannesburg", "South African time"),
    "WAT": ("Africa/Lagos", "West Africa time"),
    "CAT": ("Africa/Maputo", "Central Africa time"),
    "EAT": ("Africa/Nairobi", "East Africa time"),
    "BRT": ("America/Sao_Paulo", "Brasília time"),
    "ART": ("America/Argentina/Buenos_Aires", "Argentina time"),
}

# IANA areas whose last component is a place name worth matching on its own.
_CITY_AREAS: Final = (
    "Africa/",
    "America/",
    "Arctic/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)


@dataclass(frozen=True)
class _Place:
    name: str  # for display and suggestions
    key: str
    note: str | None


def _place_sort_key(key: str) -> tuple[bool, bool, int]:
    # Prefer current names, then the more specific (America/Argentina/Cordoba over the
    # old America/Cordoba), then the shortest.
    return (key in _RENAMED_KEYS, key.count("/") < 2, len(key))


@cache
def _places() -> dict[str, _Place]:
    """Normalised name → place: IANA city parts first, then the curated table on top."""
    by_city: dict[str, list[str]] = {}
    for key in _available_keys():
        if key.startswith(_CITY_AREAS):
            by_city.setdefault(key.rsplit("/", 1)[1], []).append(key)
    places: dict[str, _Place] = {}
    for city, keys in by_city.items():
        key = min(keys, key=_place_sort_key)
        key = _RENAMED_KEYS.get(key, key)
        places[_normalize(city)] = _Place(city.replace("_", " "), key, None)
    from_table: set[str] = set()
    for names, key, note in _PLACE_TABLE:
        for name in names.split("|"):
            norm = _normalize(name)
            if norm not in from_table:  # the first spelling listed is the one shown
                places[norm] = _Place(name, key, note)
                from_table.add(norm)
    return places


# --------------------------------------------------------------------------- resolving

_OFFSET_TEXT: Final = re.compile(
    r"^(?:utc|gmt|z)?\s*([+\-−])\s*([0-9]{1,2})(?:(?::|\.|h)?([0-9]{2}))?$", re.IGNORECASE
)
_UTC_WORDS: Final = frozenset({"utc", "gmt", "z", "zulu", "utc0", "gmt0", "utc+0", "gmt+0"})


def _fixed_note(offset: timedelta) -> str:
    return (
        f"That's a fixed offset (UTC{format_offset(offset)}), "
        "so reminders won't follow daylight saving changes."
    )


def _parse_offset(text: str) -> ResolvedZone | None:
    # Any script's decimal digits count (see schedule.ascii_digits); the pattern is ASCII.
    s = ascii_digits(text.strip().replace(" ", ""))
    if s.lower() in _UTC_WORDS:
        return ResolvedZone("UTC", UTC, "UTC", True, (_fixed_note(timedelta(0)),))
    m = _OFFSET_TEXT.match(s)
    if m is None:
        return None
    hours, minutes = int(m[2]), int(m[3] or 0)
    offset = timedelta(hours=hours, minutes=minutes)
    if m[1] != "+":
        offset = -offset
    if minutes > 59 or not MIN_OFFSET <= offset <= MAX_OFFSET:
        raise TimezoneError(
            f"“{text.strip()}” isn't a real UTC offset; they run from -12:00 to +14:00."
        )
    tz = _fixed_zone(offset)
    key = zone_key(tz)
    name = "UTC" if key == "UTC" else f"UTC{key}"
    return ResolvedZone(key, tz, name, True, (_fixed_note(offset),))


def _from_key(key: str, name: str, notes: tuple[str, ...] = ()) -> ResolvedZone:
    tz = zone_from_key(key)
    fixed = _is_fixed(tz) and (key.startswith("Etc/") or "/" not in key)
    if fixed:
        offset = tz.utcoffset(datetime(2026, 1, 1, tzinfo=UTC))
        assert offset is not None
        notes = (*notes, _fixed_note(offset))
        if key.startswith("Etc/"):  # "Etc/GMT+3" means UTC-03:00: show the latter
            name = f"UTC{format_offset(offset)}" if offset else "UTC"
    return ResolvedZone(key, tz, name, fixed, notes)


def _lookup_place(text: str) -> ResolvedZone | None:
    places = _places()
    norm = _normalize(text)
    place = places.get(norm)
    if place is None and "," in text:
        # "Berlin, Germany": fall back to the part before the first comma.
        place = places.get(_normalize(text.split(",", 1)[0]))
    if place is None:
        return None
    notes = (place.note,) if place.note else ()
    return _from_key(place.key, place.name, notes)


def _suggestions(text: str) -> tuple[str, ...]:
    norm = _normalize(text)
    if "/" in text:
        names = {_normalize(k): k for k in _available_keys() - _RENAMED_KEYS.keys() if "/" in k}
    else:
        names = {n: p.name for n, p in _places().items()}
    found: list[str] = []
    for match in difflib.get_close_matches(norm, list(names), n=6, cutoff=0.7):
        if names[match] not in found:
            found.append(names[match])
    return tuple(found[:3])


def resolve_timezone(text: str) -> ResolvedZone:
    """A zone from an IANA name, a city or country, an abbreviation, or a UTC offset.

    Raises :class:`TimezoneError` (with up to 3 ``suggestions``) when nothing fits.
    """
    s = " ".join(text.strip().split())
    if not s:
        raise TimezoneError("Send a city like “Berlin” or an offset like “+05:30”.")
    fixed = _parse_offset(s)
    if fixed is not None:
        return fixed
    abbreviation = _ABBREVIATIONS.get(s.upper())
    if abbreviation is not None:
        key, meaning = abbreviation
        return _from_key(key, key, (f"I read “{s}” as {meaning}.",))
    if "/" in s:
        typed_key = _keys_by_lower().get(s.lower().replace(" ", "_"))
        if typed_key is not None:
            typed_key = _RENAMED_KEYS.get(typed_key, typed_key)
            return _from_key(typed_key, typed_key)
    place = _lookup_place(s)
    if place is not None:
        return place
    suggestions = _suggestions(s)
    if suggestions:
        raise TimezoneError(f"I don't know “{s}” as a place or time zone.", suggestions)
    raise TimezoneError(
        f"I don't know “{s}” as a place or time zone; try a big city near you or “+05:30”."
    )


# --------------------------------------------------------------------------- location


def timezone_from_location(lat: float, lon: float) -> str | None:
    """The IANA key at a point, offline; ``Etc/GMT±N`` at sea, None if unknown.

    Backed by tzfpy's bundled polygons (a 3 MB wheel with no dependencies, where
    timezonefinder would bring 110 MB with numpy); the first call loads them (~0.1 s).
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"not a coordinate: {lat}, {lon}")
    key = tzfpy.get_tz(lon, lat)
    if not key:
        return None
    key = _RENAMED_KEYS.get(key, key)
    return key if key in _available_keys() else None


def resolve_location(lat: float, lon: float) -> ResolvedZone | None:
    """:func:`timezone_from_location` as a :class:`ResolvedZone` (fixed at sea)."""
    key = timezone_from_location(lat, lon)
    return None if key is None else _from_key(key, key)
