"""Sunscreen that follows the sun: kept locations, and outdoor mode's reapply reminders.

No Telegram here. Outdoor mode lives in the reminder engine's own tables: each user has
at most one hidden reminder of kind "reapply" (always paused, so no calendar ever plans
it), and turning the mode on stores its day's reapply times as occurrences, each with a
deadline. The dispatcher then sends them like any reminder: claimed, paced, durable
across restarts. The mode is on exactly while such an occurrence is waiting.
"""

import importlib.resources
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Final

from sqlmodel import Session, col, delete, select

from miliabot_tg import repo
from miliabot_tg.models import (
    Occurrence,
    OccurrenceStatus,
    Reminder,
    ReminderKind,
    User,
    UserStatus,
    UvLocation,
)
from miliabot_tg.schedule import Rule
from miliabot_tg.uv import rounded

REAPPLY: Final = "reapply"
REAPPLY_LABEL: Final = "Reapply sunscreen"
# Water-resistant sunscreen is tested for 40 minutes in water: reapply after that.
SWIM_AFTER: Final = timedelta(minutes=40)
# A reapply reminder more than this late is no use: it is recorded missed, not sent.
REAPPLY_DEADLINE: Final = timedelta(hours=1)
REAPPLY_EVERY: Final = timedelta(hours=2)
# Without a forecast, outdoor mode reminds until this local time.
FALLBACK_END: Final = time(16, 0)
# Morning sunscreen reminders (scheduled before this, local) get the day's UV.
MORNING_ENDS: Final = time(12, 0)
_WAITING: Final = (OccurrenceStatus.PENDING.value, OccurrenceStatus.SNOOZED.value)
# The hidden reminder is always paused; its rule is never used, but must parse.
_PLACEHOLDER_RULE: Final = "12:00|daily"


@dataclass(frozen=True)
class Place:
    """Where a user's UV comes from: a kept location, or their timezone's main city."""

    latitude: float
    longitude: float
    city: str | None  # None: the location they shared


# --- where -------------------------------------------------------------------------------------


def _coordinate(text: str, degree_digits: int) -> float:
    sign = -1.0 if text[0] == "-" else 1.0
    digits = text[1:]
    degrees = int(digits[:degree_digits])
    minutes = int(digits[degree_digits : degree_digits + 2])
    seconds = int(digits[degree_digits + 2 :] or 0)
    return sign * (degrees + minutes / 60 + seconds / 3600)


@cache
def _zone_table() -> dict[str, tuple[float, float]]:
    """tzdata's zone1970.tab: each IANA zone's principal city and its coordinates."""
    try:
        text = (
            importlib.resources.files("tzdata").joinpath("zoneinfo/zone1970.tab").read_text("utf-8")
        )
    except (ModuleNotFoundError, FileNotFoundError):
        path = Path("/usr/share/zoneinfo/zone1970.tab")
        text = path.read_text("utf-8") if path.exists() else ""
    table: dict[str, tuple[float, float]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 3:
            continue
        m = re.fullmatch(r"([+-]\d{4}(?:\d{2})?)([+-]\d{5}(?:\d{2})?)", fields[1])
        if m is not None:
            table[fields[2]] = (_coordinate(m[1], 2), _coordinate(m[2], 3))
    return table


def zone_place(key: str | None) -> Place | None:
    """The principal city of an IANA zone (Europe/Lisbon: Lisbon), if tzdata knows it."""
    if not key or key not in _zone_table():
        return None
    latitude, longitude = _zone_table()[key]
    lat, lon = rounded(latitude, longitude)
    return Place(lat, lon, key.rsplit("/", 1)[-1].replace("_", " "))


def get_location(*, session: Session, user_id: int) -> UvLocation | None:
    """The location a user agreed to keep, if any."""
    return session.get(UvLocation, user_id)


def save_location(
    *, session: Session, user_id: int, latitude: float, longitude: float, now: datetime
) -> tuple[float, float]:
    """Keep a location for UV forecasts, rounded to 0.1°; return what was stored."""
    if session.get(User, user_id) is None:
        raise LookupError(f"unknown user {user_id}")
    lat, lon = rounded(latitude, longitude)
    row = session.get(UvLocation, user_id) or UvLocation(
        user_id=user_id, latitude=lat, longitude=lon, updated_at=now
    )
    row.latitude, row.longitude, row.updated_at = lat, lon, now
    session.add(row)
    session.commit()
    return lat, lon


def delete_location(*, session: Session, user_id: int) -> bool:
    """Forget a kept location; return whether there was one."""
    deleted = session.exec(delete(UvLocation).where(col(UvLocation.user_id) == user_id))
    session.commit()
    return bool(deleted.rowcount)


def user_place(*, session: Session, user_id: int) -> Place | None:
    """Where to forecast UV for: the kept location, else the chosen timezone's city."""
    kept = session.get(UvLocation, user_id)
    if kept is not None:
        return Place(kept.latitude, kept.longitude, None)
    user = session.get(User, user_id)
    return zone_place(user.timezone) if user is not None else None


def places_due_soon(*, session: Session, now: datetime, within: timedelta) -> dict[int, Place]:
    """Users with a sunscreen or reapply reminder due before `now + within`, and their place.

    What the prefetch fetches forecasts for, so the dispatcher finds them in the cache.
    Two indexed queries whatever the number of users; only users with a kept location or
    a chosen zone come back.
    """
    until = now + within
    located = (
        select(Reminder.user_id, UvLocation.latitude, UvLocation.longitude, User.timezone)
        .join(User, col(User.id) == col(Reminder.user_id))
        .outerjoin(UvLocation, col(UvLocation.user_id) == col(Reminder.user_id))
        .where(
            col(User.status) == UserStatus.ACTIVE.value,
            (col(UvLocation.user_id).is_not(None)) | (col(User.timezone).is_not(None)),
        )
    )
    soon = located.where(
        col(Reminder.kind) == ReminderKind.SUNSCREEN.value, col(Reminder.next_due_at) <= until
    )
    waiting = located.join(Occurrence, col(Occurrence.reminder_id) == col(Reminder.id)).where(
        col(Reminder.kind).in_((ReminderKind.SUNSCREEN.value, REAPPLY)),
        # Being sent right now counts too: the dispatcher reads the place as it sends.
        col(Occurrence.status).in_((*_WAITING, OccurrenceStatus.SENDING.value)),
        col(Occurrence.due_at) <= until,
    )
    places: dict[int, Place] = {}
    for query in (soon, waiting):
        for user_id, latitude, longitude, zone in session.exec(query):
            if latitude is not None and longitude is not None:
                places[user_id] = Place(latitude, longitude, None)
            elif (place := zone_place(zone)) is not None:
                places[user_id] = place
    return places


# --- outdoor mode ------------------------------------------------------------------------------


def _reapply_reminder(session: Session, user_id: int, now: datetime) -> Reminder:
    found = session.exec(
        select(Reminder).where(col(Reminder.user_id) == user_id, col(Reminder.kind) == REAPPLY)
    ).first()
    if found is not None:
        return found
    Rule.from_text(_PLACEHOLDER_RULE)  # a rule every re-plan can read (it stays paused)
    reminder = Reminder(
        user_id=user_id,
        kind=REAPPLY,
        label=REAPPLY_LABEL,
        rule=_PLACEHOLDER_RULE,
        paused=True,
        next_due_at=None,
        created_at=now,
        updated_at=now,
    )
    return repo.add_hidden_reminder(session=session, reminder=reminder)


def start_outdoors(
    *, session: Session, user_id: int, times: Sequence[datetime], now: datetime
) -> bool:
    """Plan today's reapply reminders, replacing any planned before; False for a gone user."""
    user = session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return False
    reminder = _reapply_reminder(session, user_id, now)
    _drop_waiting(session, reminder, now)
    for at in times:
        _add_occurrence(session, reminder, user_id, at)
    session.commit()
    return True


def add_swim(*, session: Session, user_id: int, now: datetime) -> datetime | None:
    """A one-off reapply after swimming; None when the user is gone."""
    user = session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    reminder = _reapply_reminder(session, user_id, now)
    at = (now + SWIM_AFTER).replace(second=0, microsecond=0)
    _add_occurrence(session, reminder, user_id, at)
    session.commit()
    return at


def stop_outdoors(*, session: Session, user_id: int, now: datetime) -> int:
    """End outdoor mode: skip every reapply reminder still waiting; return how many."""
    reminder = session.exec(
        select(Reminder).where(col(Reminder.user_id) == user_id, col(Reminder.kind) == REAPPLY)
    ).first()
    if reminder is None:
        return 0
    count = _drop_waiting(session, reminder, now)
    session.commit()
    return count


def upcoming_reapply(*, session: Session, user_id: int) -> list[datetime]:
    """When the waiting reapply reminders are due: empty when outdoor mode is off."""
    return list(
        session.exec(
            select(Occurrence.due_at)
            .join(Reminder, col(Reminder.id) == col(Occurrence.reminder_id))
            .where(
                col(Reminder.user_id) == user_id,
                col(Reminder.kind) == REAPPLY,
                col(Occurrence.status).in_(_WAITING),
            )
            .order_by(col(Occurrence.due_at))
        )
    )


def _drop_waiting(session: Session, reminder: Reminder, now: datetime) -> int:
    # Deleted, not skipped: they never happened, so they are no one's history.
    result = session.exec(
        delete(Occurrence).where(
            col(Occurrence.reminder_id) == reminder.id,
            col(Occurrence.status).in_(_WAITING),
        )
    )
    return int(result.rowcount)


def _add_occurrence(session: Session, reminder: Reminder, user_id: int, at: datetime) -> None:
    assert reminder.id is not None
    at = at.replace(second=0, microsecond=0)
    taken = session.exec(
        select(Occurrence.id).where(
            col(Occurrence.reminder_id) == reminder.id, col(Occurrence.scheduled_for) == at
        )
    ).first()
    if taken is not None:
        return  # sent already at that minute (unique per reminder and time)
    session.add(
        Occurrence(
            reminder_id=reminder.id,
            user_id=user_id,
            scheduled_for=at,
            due_at=at,
            expires_at=at + REAPPLY_DEADLINE,
        )
    )


def data_lines(*, session: Session, user_id: int) -> list[str]:
    """What this feature keeps about a user, in words (for /mydata and /settings)."""
    kept = session.get(UvLocation, user_id)
    if kept is None:
        return []
    return [f"Location for UV forecasts: {kept.latitude:.1f}, {kept.longitude:.1f} (about 10 km)"]
