"""Reminder rules: parsing ``/remind`` arguments, storing rules, and finding their occurrences.

Pure policy, no Telegram and no database.  All instants returned here are aware UTC
datetimes; all wall-clock reasoning happens in the user's zone.

Daylight saving policy (wall-clock semantics in the user's zone):

* a local time that does not exist on a spring-forward day fires at the first valid
  instant after it, i.e. at the end of the gap (02:30 Europe/Berlin on 2026-03-29 fires
  at 03:00 CEST);
* a local time that occurs twice on a fall-back day fires once, at its first
  occurrence (``fold=0``);
* otherwise a reminder keeps its wall-clock time across a switch (08:30 stays 08:30
  local, so its UTC instant moves by an hour).

Weekly rules are searched with APScheduler 3's ``CronTrigger`` (one trigger per time of
day) used as a wall-clock calendar, and :func:`_resolve_wall` turns each wall time into an
instant under the policy above (see :func:`_cron_stream` for why the trigger does not run
in the user's zone itself).  Every-N-days rules step calendar dates from their anchor date
(APScheduler's ``CalendarIntervalTrigger`` skips a day whose time falls in a spring-forward
gap, and can only start from its start date, so it is not used).

Digits in what people type: every Unicode decimal digit (``٠٨:٣٠``, ``０８:３０``, ``۸pm``)
is read as its ASCII digit by :func:`ascii_digits` before parsing, one character for one,
so positions in the text stay the same and labels are cut from the text as typed. The
patterns themselves match ``[0-9]`` only, so a character that merely looks like a digit
(``²``, ``①``, ``Ⅻ``, ``¼``: ``str.isdigit`` says yes, ``int()`` says no) is never read as
a number and gets the usual friendly answer. Stored texts (rules, quiet hours) are ASCII.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Final, Literal, TypeAlias

from apscheduler.triggers.cron import CronTrigger

__all__ = [
    "DAILY",
    "MAX_EVERY_N_DAYS",
    "MAX_LABEL_LENGTH",
    "MAX_TIMES",
    "MIN_EVERY_N_DAYS",
    "WEEKDAYS",
    "WEEKENDS",
    "Days",
    "EveryNDays",
    "Kind",
    "ParseError",
    "QuietHours",
    "ReminderSpec",
    "Rule",
    "WeekdaySet",
    "ascii_digits",
    "defer_out_of_quiet",
    "describe",
    "describe_quiet",
    "next_occurrence",
    "occurrences_between",
    "parse_quiet",
    "parse_remind",
    "snooze_until",
    "times_per_week",
]

Kind: TypeAlias = Literal["sunscreen", "moisturize", "exfoliate", "custom"]

MAX_LABEL_LENGTH: Final = 64
MAX_TIMES: Final = 6
MIN_EVERY_N_DAYS: Final = 2
MAX_EVERY_N_DAYS: Final = 30
MAX_SNOOZE_MINUTES: Final = 7 * 24 * 60

_DAY_ABBR: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_TITLE: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ParseError(ValueError):
    """What the user typed could not be read; ``message`` is one short friendly sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class WeekdaySet:
    """Fires on these weekdays (0 = Monday … 6 = Sunday); daily/weekdays/weekends are sets."""

    days: frozenset[int]

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError("a weekday set needs at least one day")
        if not all(isinstance(d, int) and 0 <= d <= 6 for d in self.days):
            raise ValueError(f"weekdays must be 0..6, got {sorted(self.days)!r}")


@dataclass(frozen=True)
class EveryNDays:
    """Fires every ``n`` calendar days counted from ``anchor`` (which is an occurrence day)."""

    n: int
    anchor: date

    def __post_init__(self) -> None:
        if not MIN_EVERY_N_DAYS <= self.n <= MAX_EVERY_N_DAYS:
            raise ValueError(
                f"every-N-days needs {MIN_EVERY_N_DAYS} <= n <= {MAX_EVERY_N_DAYS}, got {self.n}"
            )
        if isinstance(self.anchor, datetime):
            raise TypeError("anchor must be a date, not a datetime")


Days: TypeAlias = WeekdaySet | EveryNDays

DAILY: Final = WeekdaySet(frozenset(range(7)))
WEEKDAYS: Final = WeekdaySet(frozenset(range(5)))
WEEKENDS: Final = WeekdaySet(frozenset({5, 6}))


@dataclass(frozen=True)
class Rule:
    """When a reminder fires: local wall-clock times of day, and which days.

    ``times`` is normalised to a sorted tuple without duplicates, so equal rules compare and
    hash equal however they were built.
    """

    times: tuple[time, ...]
    days: Days = DAILY

    def __post_init__(self) -> None:
        times = tuple(sorted(set(self.times)))
        if not times:
            raise ValueError("a rule needs at least one time")
        if len(times) > MAX_TIMES:
            raise ValueError(f"a rule has at most {MAX_TIMES} times, got {len(times)}")
        for t in times:
            if not isinstance(t, time) or t.tzinfo is not None:
                raise ValueError(f"rule times must be naive datetime.time values, got {t!r}")
            if t.second or t.microsecond:
                raise ValueError(f"rule times are whole minutes, got {t!r}")
        object.__setattr__(self, "times", times)
        if not isinstance(self.days, WeekdaySet | EveryNDays):
            raise TypeError(f"days must be WeekdaySet or EveryNDays, got {self.days!r}")

    def to_text(self) -> str:
        """Compact stable text for a database column, e.g. ``08:00,21:30|mon,thu``."""
        times = ",".join(_hhmm(t) for t in self.times)
        return f"{times}|{_days_to_text(self.days)}"

    @classmethod
    def from_text(cls, text: str) -> Rule:
        """Inverse of :meth:`to_text`; raises ``ValueError`` on anything malformed."""
        times_part, sep, days_part = text.partition("|")
        if not sep:
            raise ValueError(f"malformed rule text {text!r}: no '|'")
        times: list[time] = []
        for item in times_part.split(","):
            m = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", item)
            if m is None:
                raise ValueError(f"malformed rule text {text!r}: bad time {item!r}")
            times.append(time(int(m[1]), int(m[2])))
        return cls(tuple(times), _days_from_text(days_part, text))


def _hhmm(t: time) -> str:
    return f"{t.hour:02d}:{t.minute:02d}"


def _days_to_text(days: Days) -> str:
    if isinstance(days, EveryNDays):
        return f"every{days.n}:{days.anchor.isoformat()}"
    if days == DAILY:
        return "daily"
    if days == WEEKDAYS:
        return "weekdays"
    if days == WEEKENDS:
        return "weekends"
    return ",".join(_DAY_ABBR[d] for d in sorted(days.days))


def _days_from_text(part: str, whole: str) -> Days:
    named = {"daily": DAILY, "weekdays": WEEKDAYS, "weekends": WEEKENDS}
    if part in named:
        return named[part]
    m = re.fullmatch(r"every([0-9]{1,2}):([0-9]{4}-[0-9]{2}-[0-9]{2})", part)
    if m is not None:
        return EveryNDays(int(m[1]), date.fromisoformat(m[2]))
    items = part.split(",")
    if not all(item in _DAY_ABBR for item in items):
        raise ValueError(f"malformed rule text {whole!r}: bad days {part!r}")
    return WeekdaySet(frozenset(_DAY_ABBR.index(item) for item in items))


@dataclass(frozen=True)
class ReminderSpec:
    """The result of parsing ``/remind`` arguments; nothing is stored by the parser."""

    kind: Kind
    label: str
    rule: Rule


# --------------------------------------------------------------------------- describing


def _join_and(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe(rule: Rule) -> str:
    """A phone-friendly phrase, e.g. ``weekdays at 08:00 and 21:30``."""
    at = "at " + _join_and([_hhmm(t) for t in rule.times])
    days = rule.days
    if isinstance(days, EveryNDays):
        every = "every other day" if days.n == 2 else f"every {days.n} days"
        return f"{every} {at}"
    if days == DAILY:
        return f"every day {at}"
    if days == WEEKDAYS:
        return f"weekdays {at}"
    if days == WEEKENDS:
        return f"weekends {at}"
    names = [_DAY_TITLE[d] for d in sorted(days.days)]
    if len(names) == 1:
        return f"every {names[0]} {at}"
    return f"{_join_and(names)} {at}"


def times_per_week(rule: Rule) -> float:
    """Average number of occurrences per week (e.g. 2.0 for ``21:00 mon,thu``)."""
    days = rule.days
    per_week = 7 / days.n if isinstance(days, EveryNDays) else float(len(days.days))
    return len(rule.times) * per_week


# --------------------------------------------------------------------------- parsing /remind

_KIND_ALIASES: Final[dict[str, Kind]] = {
    **dict.fromkeys(
        ("sunscreen", "sunscreens", "sun screen", "spf", "sunblock", "sun block", "suncream"),
        "sunscreen",
    ),
    "sun cream": "sunscreen",
    **dict.fromkeys(
        (
            "moisturize",
            "moisturise",
            "moisturizer",
            "moisturiser",
            "moisturizing",
            "moisturising",
        ),
        "moisturize",
    ),
    **dict.fromkeys(
        ("exfoliate", "exfoliation", "exfoliating", "exfoliant"),
        "exfoliate",
    ),
}

_DAY_NAMES: Final[dict[str, int]] = {}
for _i, _names in enumerate(
    (
        ("mon", "monday"),
        ("tue", "tues", "tuesday"),
        ("wed", "weds", "wednesday"),
        ("thu", "thur", "thurs", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    )
):
    for _name in _names:
        _DAY_NAMES[_name] = _i
        _DAY_NAMES[_name + "s"] = _i  # "mondays", "tues" already covered

_DAILY_WORDS: Final = frozenset({"daily", "every day", "everyday", "each day", "all days"})
_WEEKDAY_WORDS: Final = frozenset({"weekdays", "weekday", "every weekday", "workdays"})
_WEEKEND_WORDS: Final = frozenset({"weekends", "weekend", "every weekend"})

# Anything that looks like a clock time, valid or not, so "25:00" is reported, not swallowed
# into the label.
_TIME_TOKEN: Final = re.compile(
    r"(?<![\w:])(?:[0-9]+(?::[0-9]+)?\s?[ap]\.?m\.?(?!\w)|[0-9]+:[0-9]+(?![\w:]))",
    re.IGNORECASE,
)
_TIME_SEP: Final = re.compile(r"\s*(?:,|&|\band\b)?\s*", re.IGNORECASE)
_AMPM: Final = re.compile(r"^([0-9]{1,2})(?::([0-9]{2}))?\s?([ap])\.?m\.?$", re.IGNORECASE)
_H24: Final = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
_NUMBER: Final = re.compile(r"[0-9]+")

_EMPTY_MESSAGE: Final = "Tell me what to remind you about and when, like “sunscreen 08:30 daily”."


def ascii_digits(text: str) -> str:
    """``text`` with every Unicode decimal digit (``٣``, ``３``, ``𝟠``) as its ASCII digit.

    One character for one, so an index into the result is an index into ``text``.
    Look-alikes that are not decimal digits (``²``, ``①``, ``¼``) are left as they are.
    """
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def _parse_clock(token: str, *, allow_bare_hour: bool = False, allow_24: bool = False) -> time:
    """One time of day: ``08:30``, ``8:30``, ``8am``, ``9:30pm``; raises ParseError."""
    bad = ParseError(f"I couldn't read “{token.strip()}” as a time.")
    s = ascii_digits(token.strip())
    m = _AMPM.match(s)
    if m is not None:
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise bad
        hour = hour % 12 + (12 if m[3].lower() == "p" else 0)
        return time(hour, minute)
    m = _H24.match(s)
    if m is None and allow_bare_hour:
        m = re.match(r"^([0-9]{1,2})()$", s)
    if m is None:
        raise bad
    hour, minute = int(m[1]), int(m[2] or 0)
    if allow_24 and hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23 or minute > 59:
        raise bad
    return time(hour, minute)


def _parse_days(text: str, today: date) -> Days:
    s = " ".join(ascii_digits(text).lower().replace("–", "-").replace("—", "-").split())
    s = s.strip(" ,;")
    if not s or s in _DAILY_WORDS:
        return DAILY
    if s.startswith("on "):
        s = s[3:]
    if s in _WEEKDAY_WORDS:
        return WEEKDAYS
    if s in _WEEKEND_WORDS:
        return WEEKENDS
    if s == "every other day":
        return EveryNDays(2, today)
    m = re.fullmatch(r"every (\S+) days?", s)
    if m is not None:
        # Not str.isdigit: it accepts "²", which int() then refuses.
        if not _NUMBER.fullmatch(m[1]):
            raise ParseError(f"I couldn't read “{m[1]}” as a number of days.")
        digits = m[1].lstrip("0") or "0"
        # Thousands of digits are far out of range, and int() refuses them (ValueError).
        n = int(digits) if len(digits) <= 9 else MAX_EVERY_N_DAYS + 1
        if n == 1:
            return DAILY
        if not MIN_EVERY_N_DAYS <= n <= MAX_EVERY_N_DAYS:
            raise ParseError(
                f"I can repeat every {MIN_EVERY_N_DAYS} to {MAX_EVERY_N_DAYS} days, "
                f"not every {digits}."
            )
        return EveryNDays(n, today)
    if s.startswith("every "):
        s = s[6:]
    found: set[int] = set()
    for token in re.split(r"[\s,/&+]+|\band\b", s):
        if not token:
            continue
        if token in _WEEKDAY_WORDS:
            found |= WEEKDAYS.days
            continue
        if token in _WEEKEND_WORDS:
            found |= WEEKENDS.days
            continue
        first, dash, last = token.partition("-")
        if dash and first in _DAY_NAMES and last in _DAY_NAMES:
            a, b = _DAY_NAMES[first], _DAY_NAMES[last]
            found.update((a + i) % 7 for i in range((b - a) % 7 + 1))
            continue
        if token not in _DAY_NAMES:
            raise ParseError(f"I couldn't read “{token}” as a day.")
        found.add(_DAY_NAMES[token])
    if not found:
        raise ParseError(f"I couldn't read “{text.strip()}” as days.")
    return WeekdaySet(frozenset(found))


def _split_trailing_days(label: str, today: date) -> tuple[str, Days | None]:
    """``sunscreen daily`` → (``sunscreen``, DAILY): days written before the time.

    A label that is nothing but days (``daily 08:30``) comes back empty: a missing label.
    """
    words = list(re.finditer(r"\S+", label))
    for n in range(min(len(words), 7), 0, -1):
        cut = words[-n].start()
        try:
            days = _parse_days(label[cut:], today)
        except ParseError:
            continue
        # Cut the original text so the label stays as typed.
        return label[:cut].rstrip(" ,"), days
    return label, None


def parse_remind(text: str, *, today: date) -> ReminderSpec:
    """Parse the text after ``/remind``, e.g. ``moisturize 08:00,21:30 weekdays``.

    ``today`` is the user's local date; it becomes the anchor of an every-N-days rule (so
    "every 3 days" counts from today).  Raises :class:`ParseError` with a short message.
    """
    typed = text.strip()
    if not typed:
        raise ParseError(_EMPTY_MESSAGE)
    # Times and days are read from `s`; the label is cut, at the same places, from `typed`.
    s = ascii_digits(typed)
    first = _TIME_TOKEN.search(s)
    if first is None:
        raise ParseError("I couldn't find a time in that; add one like 08:30 or 9pm.")

    # Times: a run of time tokens separated by commas, "and", "&" or spaces.
    tokens: list[str] = []
    pos = first.start()
    end = pos
    while True:
        m = _TIME_TOKEN.match(s, pos)
        if m is None:
            break
        tokens.append(m.group())
        end = m.end()
        sep = _TIME_SEP.match(s, end)
        pos = sep.end() if sep is not None else end
    times = sorted({_parse_clock(t) for t in tokens})
    if len(times) > MAX_TIMES:
        raise ParseError(
            f"That's more than {MAX_TIMES} times a day; please pick up to {MAX_TIMES}."
        )

    rest = s[end:]
    later_time = _TIME_TOKEN.search(rest)
    if later_time is not None:
        raise ParseError("Please put all the times together, like “08:00,21:30”.")

    label = typed[: first.start()].strip()
    label = re.sub(r"(?:(?:^|\s+)at|\s*@)$", "", label, flags=re.IGNORECASE).strip(" ,")
    days: Days | None = None
    if rest.strip(" ,;"):
        days = _parse_days(rest, today)
    else:
        label, days = _split_trailing_days(label, today)
    if not label:
        raise ParseError("Start with what to remind you about, like “sunscreen 08:30”.")
    if len(label) > MAX_LABEL_LENGTH:
        raise ParseError(f"That name is too long; please keep it to {MAX_LABEL_LENGTH} characters.")
    kind: Kind = _KIND_ALIASES.get(" ".join(label.lower().split()), "custom")
    return ReminderSpec(kind=kind, label=label, rule=Rule(tuple(times), days or DAILY))


# --------------------------------------------------------------------------- occurrences


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


def _resolve_wall(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant at which local wall time ``wall`` (naive) fires in ``tz``.

    Existing and repeated times resolve to their first occurrence (``fold=0``).  A time
    that falls into a spring-forward gap resolves to the end of the gap, the first valid
    instant after it (02:30 Berlin on 2026-03-29 → 03:00 CEST).  Plain
    ``wall.replace(tzinfo=tz)`` would map it with the pre-transition offset instead
    (→ 03:30 CEST), which is what APScheduler's CronTrigger does.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Nonexistent: PEP 495 maps fold=0 with the offset before the transition and fold=1
    # with the offset after it, so the transition lies between the two readings.
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, second), max(first, second)
    # Invariant: local(lo) < wall <= local(hi).  Transitions fall on whole seconds.
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


@lru_cache(maxsize=1024)
def _wall_clock_trigger(t: time, day_of_week: str) -> CronTrigger:
    """A CronTrigger that matches wall-clock times: it runs in UTC, where nothing shifts.

    Its datetimes are read as naive local wall times of the user's zone.
    """
    return CronTrigger(
        day_of_week=day_of_week, hour=t.hour, minute=t.minute, second=0, timezone=UTC
    )


def _cron_stream(t: time, day_of_week: str, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    """Occurrences of one time of day under a CronTrigger, strictly after ``after`` (UTC).

    Why not simply ``CronTrigger(timezone=tz)``: APScheduler 3.11.3 in a DST zone (a) hands
    back nonexistent spring-forward times mapped with the old offset (02:30 Berlin → 03:30
    CEST), (b) fires a repeated fall-back time twice (fold=0, then fold=1), and (c) skips
    the first hour after midnight on the day after a spring-forward (it adds wall-clock
    differences as elapsed time; agronholm/apscheduler#606), e.g. a daily 00:00 job jumps
    from Sunday to Tuesday.  So the trigger only walks the calendar, and
    :func:`_resolve_wall` applies the DST policy.
    """
    trigger = _wall_clock_trigger(t, day_of_week)
    # Every wall time before the local wall time of ``after`` resolves to an instant at or
    # before ``after``; later ones may too (inside a repeated hour), hence the check below.
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0)
    last = after
    while True:
        fire: datetime | None = trigger.get_next_fire_time(
            None, wall.replace(tzinfo=UTC) + timedelta(microseconds=1)
        )
        if fire is None:  # pragma: no cover - no end_date is ever set
            return
        wall = fire.replace(tzinfo=None)
        instant = _resolve_wall(wall, tz)
        # A fall-back repeat or two walls in one spring gap resolve to an instant already
        # yielded: drop them.
        if instant > last:
            yield instant
            last = instant


def _every_n_stream(
    rule: Rule, days: EveryNDays, tz: tzinfo, after: datetime
) -> Iterator[datetime]:
    """Occurrences of an every-N-days rule strictly after ``after``, by calendar-date steps."""
    # Start one local date early: around a fall-back at midnight the local date of
    # ``after`` can be a day behind a wall time that is still ahead of it.  The
    # ``instant > last`` check drops whatever is too early.
    start = after.astimezone(tz).date() - timedelta(days=1)
    if start <= days.anchor:
        current = days.anchor
    else:
        steps = -(-(start - days.anchor).days // days.n)  # ceiling division
        current = days.anchor + timedelta(days=steps * days.n)
    last = after
    while True:
        for t in rule.times:
            instant = _resolve_wall(datetime.combine(current, t), tz)
            if instant > last:
                yield instant
                last = instant
        current += timedelta(days=days.n)


def _dedupe(stream: Iterator[datetime]) -> Iterator[datetime]:
    last: datetime | None = None
    for item in stream:
        if item != last:
            yield item
            last = item


def _occurrences(rule: Rule, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    _require_aware("after", after)
    after_utc = after.astimezone(UTC)
    days = rule.days
    if isinstance(days, EveryNDays):
        return _every_n_stream(rule, days, tz, after_utc)
    dow = "*" if days == DAILY else ",".join(_DAY_ABBR[d] for d in sorted(days.days))
    streams = [_cron_stream(t, dow, tz, after_utc) for t in rule.times]
    # Two times can land on the same instant (02:30 and 03:00 on a spring-forward day).
    return _dedupe(heapq.merge(*streams))


def next_occurrence(rule: Rule, tz: tzinfo, after: datetime) -> datetime:
    """The first occurrence strictly after ``after`` (aware, any zone), as an aware UTC time."""
    return next(_occurrences(rule, tz, after))


def occurrences_between(
    rule: Rule, tz: tzinfo, start: datetime, end: datetime, *, limit: int = 1000
) -> list[datetime]:
    """Occurrences ``o`` with ``start < o <= end`` (aware UTC), at most ``limit`` of them.

    The earliest ``limit`` are returned; ``len(result) == limit`` means there may be more.
    """
    _require_aware("start", start)
    _require_aware("end", end)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    result: list[datetime] = []
    if end <= start:
        return result
    for occurrence in _occurrences(rule, tz, start):
        if occurrence > end:
            break
        result.append(occurrence)
        if len(result) >= limit:
            break
    return result


# --------------------------------------------------------------------------- quiet hours


@dataclass(frozen=True)
class QuietHours:
    """A daily local window ``[start, end)``; it crosses midnight when ``start > end``."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t.tzinfo is not None or t.second or t.microsecond:
                raise ValueError(f"quiet hours are naive whole minutes, got {t!r}")
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, local_time: time) -> bool:
        """Whether a local wall-clock time lies inside the window (start in, end out)."""
        t = local_time.replace(tzinfo=None)
        if self.crosses_midnight:
            return t >= self.start or t < self.end
        return self.start <= t < self.end

    def to_text(self) -> str:
        """Stable text for storage, e.g. ``22:00-07:00``."""
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    @classmethod
    def from_text(cls, text: str) -> QuietHours:
        """Inverse of :meth:`to_text`; raises ``ValueError`` on anything malformed."""
        m = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])", text)
        if m is None:
            raise ValueError(f"malformed quiet hours text {text!r}")
        return cls(time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4])))


_QUIET_OFF: Final = frozenset({"off", "none", "no", "disable", "disabled", "stop"})
_QUIET_TIME: Final = r"[0-9]{1,2}(?::[0-9]{2})?\s?(?:[ap]\.?m\.?)?"
_QUIET_RE: Final = re.compile(
    rf"^({_QUIET_TIME})\s*(?:-|–|—|to|until|till)\s*({_QUIET_TIME})$", re.IGNORECASE
)


def parse_quiet(text: str) -> QuietHours | None:
    """``22:00-07:00``, ``22-7``, ``10pm-7am`` → QuietHours; ``off`` → None.

    Raises :class:`ParseError` for anything else.
    """
    s = " ".join(ascii_digits(text).strip().split())
    if s.lower() in _QUIET_OFF:
        return None
    m = _QUIET_RE.match(s)
    if m is None:
        raise ParseError("Send quiet hours like “22:00-07:00”, or “off”.")
    start = _parse_clock(m[1], allow_bare_hour=True, allow_24=True)
    end = _parse_clock(m[2], allow_bare_hour=True, allow_24=True)
    if start == end:
        raise ParseError("Quiet hours need different start and end times.")
    return QuietHours(start, end)


def describe_quiet(quiet: QuietHours | None) -> str:
    """``from 22:00 to 07:00`` or ``off``."""
    if quiet is None:
        return "off"
    return f"from {_hhmm(quiet.start)} to {_hhmm(quiet.end)}"


def defer_out_of_quiet(when: datetime, quiet: QuietHours | None, tz: tzinfo) -> datetime:
    """``when`` unchanged if outside quiet hours in ``tz``, else the window's end (aware UTC).

    The end is the first instant after ``when`` at which the local clock shows
    ``quiet.end`` (on the next local date for a window that crosses midnight and was
    entered before midnight); a nonexistent end time moves to the end of the DST gap.
    """
    _require_aware("when", when)
    if quiet is None:
        return when
    local = when.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if not quiet.contains(wall.time()):
        return when
    end_date = wall.date()
    if quiet.crosses_midnight and wall.time() >= quiet.start:
        end_date += timedelta(days=1)
    end_wall = datetime.combine(end_date, quiet.end)
    candidate = _resolve_wall(end_wall, tz)
    when_utc = when.astimezone(UTC)
    if candidate > when_utc:
        return candidate
    # ``when`` is in the repeated hour of a fall-back day, after the first reading of the
    # end time: the window ends at the second reading.
    repeat = end_wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return repeat if repeat > when_utc else when


def snooze_until(now: datetime, minutes: int, quiet: QuietHours | None, tz: tzinfo) -> datetime:
    """``now`` plus ``minutes`` of real elapsed time, then moved out of quiet hours (UTC)."""
    _require_aware("now", now)
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise ValueError(f"snooze minutes must be 1..{MAX_SNOOZE_MINUTES}, got {minutes}")
    return defer_out_of_quiet(now.astimezone(UTC) + timedelta(minutes=minutes), quiet, tz)
