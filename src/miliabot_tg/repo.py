"""Database queries, each a keyword-only function taking the session it works in."""

from datetime import datetime, timedelta, tzinfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, func, select, update

from miliabot_tg.models import (
    Delivery,
    Occurrence,
    OccurrenceStatus,
    Reminder,
    ReminderKind,
    User,
    UserPreferences,
    UserStatus,
    UvLocation,
)
from miliabot_tg.schedule import QuietHours, ReminderSpec, Rule, next_occurrence
from miliabot_tg.timezones import zone_from_key

# Occurrences a dispatcher may pick up once due.
CLAIMABLE = (OccurrenceStatus.PENDING.value, OccurrenceStatus.SNOOZED.value)

# Writing last_seen on every update would make each message a database write.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


def get_user(*, session: Session, user_id: int) -> User | None:
    """Return the user, if known."""
    return session.get(User, user_id)


def touch_user(
    *,
    session: Session,
    user_id: int,
    first_name: str,
    language_code: str | None,
    now: datetime,
    default_key: str = "UTC",
) -> tuple[User, bool]:
    """Record that a user wrote to us; return the user and whether they are new.

    A user who writes to us has evidently not blocked us, and one who asked to be
    forgotten has come back, so either way they are active again.
    """
    user = session.get(User, user_id)
    if user is None:
        user = User(
            id=user_id,
            first_name=first_name,
            language_code=language_code,
            first_seen=now,
            last_seen=now,
        )
        session.add(user)
        session.commit()
        return user, True
    if _visit_changes(user, first_name, language_code, now):
        returning = user.status != UserStatus.ACTIVE
        if user.status == UserStatus.DELETED:
            user.first_seen = now  # they asked to be forgotten: a fresh start, not a return
        user.status = UserStatus.ACTIVE
        user.first_name = first_name
        user.language_code = language_code
        user.last_seen = now
        session.add(user)
        if returning:
            # Reminders stopped while we could not reach them start again from now.
            _reschedule_all(session, user, now, default_key)
        session.commit()
    return user, False


def visit_is_news(
    *, session: Session, user_id: int, first_name: str, language_code: str | None, now: datetime
) -> bool:
    """Whether touch_user would change anything; most messages change nothing.

    Asking first, in a transaction that only reads, keeps a plain message from taking
    the database's write lock.
    """
    user = session.get(User, user_id)
    return user is None or _visit_changes(user, first_name, language_code, now)


def _visit_changes(user: User, first_name: str, language_code: str | None, now: datetime) -> bool:
    return (
        user.status != UserStatus.ACTIVE
        or user.first_name != first_name
        or user.language_code != language_code
        or now - user.last_seen >= LAST_SEEN_RESOLUTION
    )


def add_hidden_reminder(*, session: Session, reminder: Reminder) -> Reminder:
    """Add a user's weekly summary or "reapply" reminder, or return the one another
    process added since this one looked (the unique index lets only one in)."""
    try:
        with session.begin_nested():  # a savepoint: a collision undoes only this insert
            session.add(reminder)
        return reminder
    except IntegrityError:
        found = session.exec(
            select(Reminder).where(
                col(Reminder.user_id) == reminder.user_id, col(Reminder.kind) == reminder.kind
            )
        ).first()
        if found is None:
            raise  # another constraint: not the race this handles
        return found


def mark_blocked(*, session: Session, user_id: int, now: datetime) -> None:
    """Stop messaging a user who blocked the bot or whose chat is gone."""
    user = session.get(User, user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return
    user.status = UserStatus.BLOCKED
    session.add(user)
    _silence_reminders(session, user_id, now, error="user blocked the bot")
    session.commit()


def unblock_user(
    *, session: Session, user_id: int, now: datetime, default_key: str
) -> list[Reminder]:
    """Resume a user who unblocked the bot; return their reminders, re-planned from now.

    Only a blocked user comes back this way: one who asked to be forgotten stays
    forgotten, and an unknown user is not created, until they write to us.
    """
    user = session.get(User, user_id)
    if user is None or user.status != UserStatus.BLOCKED:
        return []
    user.status = UserStatus.ACTIVE
    session.add(user)
    reminders = _reschedule_all(session, user, now, default_key)
    session.commit()
    return reminders


def _silence_reminders(session: Session, user_id: int, now: datetime, *, error: str) -> None:
    session.exec(
        update(Reminder)
        .where(col(Reminder.user_id) == user_id)
        .values(next_due_at=None, updated_at=now)
    )
    session.exec(
        update(Occurrence)
        .where(
            col(Occurrence.user_id) == user_id,
            col(Occurrence.status).in_(CLAIMABLE),
        )
        .values(status=OccurrenceStatus.FAILED.value, outcome_at=now, error=error)
    )


def forget_user(*, session: Session, user_id: int, now: datetime | None = None) -> None:
    """Erase a user's personal data, keeping only the id and the fact they left."""
    session.exec(delete(Occurrence).where(col(Occurrence.user_id) == user_id))
    # Their broadcast deliveries too: pending ones are never sent, sent ones leave no trace.
    session.exec(delete(Delivery).where(col(Delivery.user_id) == user_id))
    session.exec(delete(Reminder).where(col(Reminder.user_id) == user_id))
    session.exec(delete(UserPreferences).where(col(UserPreferences.user_id) == user_id))
    session.exec(delete(UvLocation).where(col(UvLocation.user_id) == user_id))
    user = session.get(User, user_id)
    if user is not None:
        user.status = UserStatus.DELETED
        user.first_name = ""
        user.language_code = None
        user.timezone = None
        if now is not None:
            # Not even when they first came: only the id and the moment they left are kept.
            user.first_seen = user.last_seen = now
        session.add(user)
    session.commit()


def count_users(*, session: Session, status: UserStatus | None = None) -> int:
    """Count users, optionally of one status."""
    query = select(func.count()).select_from(User)
    if status is not None:
        query = query.where(col(User.status) == status.value)
    return session.exec(query).one()


# --- timezone, quiet hours and the global pause --------------------------------------------


def user_zone(user: User | None, default_key: str) -> tzinfo:
    """Return the user's timezone, or the configured default when they set none."""
    return zone_from_key(user.timezone if user is not None and user.timezone else default_key)


def get_preferences(*, session: Session, user_id: int) -> UserPreferences | None:
    """Return the user's preferences row, if they changed anything."""
    return session.get(UserPreferences, user_id)


def _preferences(session: Session, user_id: int, now: datetime) -> UserPreferences:
    prefs = session.get(UserPreferences, user_id)
    if prefs is None:
        prefs = UserPreferences(user_id=user_id, updated_at=now)
    prefs.updated_at = now
    return prefs


def quiet_hours(prefs: UserPreferences | None) -> QuietHours | None:
    """Return the user's quiet hours, if set."""
    if prefs is None or not prefs.quiet_start or not prefs.quiet_end:
        return None
    return QuietHours.from_text(f"{prefs.quiet_start}-{prefs.quiet_end}")


def set_quiet_hours(
    *, session: Session, user_id: int, quiet: QuietHours | None, now: datetime
) -> None:
    """Set or clear quiet hours; due reminders are deferred when they are sent."""
    prefs = _preferences(session, user_id, now)
    if quiet is None:
        prefs.quiet_start = prefs.quiet_end = None
    else:
        prefs.quiet_start, prefs.quiet_end = quiet.to_text().split("-")
    session.add(prefs)
    session.commit()


def set_timezone(
    *, session: Session, user_id: int, key: str, now: datetime, default_key: str
) -> list[Reminder]:
    """Store the user's zone and recompute every active reminder's next occurrence."""
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"unknown user {user_id}")
    user.timezone = key
    session.add(user)
    reminders = _reschedule_all(session, user, now, default_key)
    session.commit()
    return reminders


def set_all_paused(
    *, session: Session, user_id: int, paused: bool, now: datetime, default_key: str
) -> list[Reminder]:
    """Pause (/stop) or resume every reminder of the user at once."""
    prefs = _preferences(session, user_id, now)
    prefs.reminders_paused = paused
    session.add(prefs)
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"unknown user {user_id}")
    reminders = _reschedule_all(session, user, now, default_key, all_paused=paused)
    if paused:  # /stop ends outdoor mode too: its reapply reminders are planned, not recurring
        session.exec(
            delete(Occurrence).where(
                col(Occurrence.user_id) == user_id,
                col(Occurrence.status).in_(CLAIMABLE),
                col(Occurrence.reminder_id).in_(
                    select(Reminder.id).where(
                        col(Reminder.user_id) == user_id, col(Reminder.kind) == "reapply"
                    )
                ),
            )
        )
    session.commit()
    return reminders


def _reschedule_all(
    session: Session,
    user: User,
    now: datetime,
    default_key: str,
    *,
    all_paused: bool | None = None,
) -> list[Reminder]:
    if all_paused is None:
        prefs = session.get(UserPreferences, user.id)
        all_paused = prefs is not None and prefs.reminders_paused
    zone = user_zone(user, default_key)
    reminders = list(session.exec(select(Reminder).where(col(Reminder.user_id) == user.id)))
    for reminder in reminders:
        upcoming = _next_due(reminder, user, zone, now, all_paused=all_paused)
        already_due = reminder.next_due_at is not None and reminder.next_due_at <= now
        if upcoming is not None and already_due:
            # Due this very moment and not yet picked up: let it fire; the dispatcher
            # computes the following time in the new zone.
            continue
        reminder.next_due_at = upcoming
        reminder.updated_at = now
        session.add(reminder)
    # Moved like the rest, but not one of "your reminders" to count or show.
    return [r for r in reminders if r.kind != ReminderKind.WEEKLY.value]


def _refresh_next_due(
    session: Session, reminder: Reminder, user: User, now: datetime, default_key: str
) -> None:
    """Recompute one reminder's next firing after a change to it."""
    prefs = session.get(UserPreferences, user.id)
    reminder.next_due_at = _next_due(
        reminder,
        user,
        user_zone(user, default_key),
        now,
        all_paused=prefs is not None and prefs.reminders_paused,
    )
    session.add(reminder)


def _next_due(
    reminder: Reminder, user: User, zone: tzinfo, now: datetime, *, all_paused: bool
) -> datetime | None:
    """Return when the reminder fires next, or None while it must stay silent."""
    if reminder.paused or all_paused or user.status != UserStatus.ACTIVE:
        return None
    return next_occurrence(Rule.from_text(reminder.rule), zone, now)


# --- reminders -------------------------------------------------------------------------------


def add_reminder(
    *, session: Session, user_id: int, spec: ReminderSpec, now: datetime, default_key: str
) -> Reminder:
    """Store a new reminder and compute its first occurrence."""
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"unknown user {user_id}")
    reminder = Reminder(
        user_id=user_id,
        kind=spec.kind,
        label=spec.label,
        rule=spec.rule.to_text(),
        created_at=now,
        updated_at=now,
    )
    _refresh_next_due(session, reminder, user, now, default_key)
    session.commit()
    return reminder


def list_reminders(*, session: Session, user_id: int) -> list[Reminder]:
    """Return the user's reminders, oldest first (not the hidden weekly summary, nor
    outdoor mode's reapply reminder)."""
    hidden = [ReminderKind.WEEKLY.value, "reapply"]
    query = (
        select(Reminder)
        .where(col(Reminder.user_id) == user_id, col(Reminder.kind).not_in(hidden))
        .order_by(col(Reminder.id))
    )
    return list(session.exec(query))


def get_reminder(*, session: Session, user_id: int, reminder_id: int) -> Reminder | None:
    """Return one of the user's reminders; another user's id gives None."""
    reminder = session.get(Reminder, reminder_id)
    return reminder if reminder is not None and reminder.user_id == user_id else None


def set_reminder_paused(
    *,
    session: Session,
    user_id: int,
    reminder_id: int,
    paused: bool,
    now: datetime,
    default_key: str,
) -> Reminder | None:
    """Pause or resume one reminder; resuming fires from the next occurrence after now."""
    reminder = get_reminder(session=session, user_id=user_id, reminder_id=reminder_id)
    user = session.get(User, user_id)
    if reminder is None or user is None:
        return None
    reminder.paused = paused
    reminder.updated_at = now
    _refresh_next_due(session, reminder, user, now, default_key)
    session.commit()
    return reminder


def update_reminder_rule(
    *,
    session: Session,
    user_id: int,
    reminder_id: int,
    rule: Rule,
    now: datetime,
    default_key: str,
) -> Reminder | None:
    """Change when a reminder fires; the next occurrence is recomputed at once."""
    reminder = get_reminder(session=session, user_id=user_id, reminder_id=reminder_id)
    user = session.get(User, user_id)
    if reminder is None or user is None:
        return None
    reminder.rule = rule.to_text()
    reminder.updated_at = now
    _refresh_next_due(session, reminder, user, now, default_key)
    session.commit()
    return reminder


def delete_reminder(*, session: Session, user_id: int, reminder_id: int) -> bool:
    """Delete one of the user's reminders and its history."""
    reminder = get_reminder(session=session, user_id=user_id, reminder_id=reminder_id)
    if reminder is None:
        return False
    session.exec(delete(Occurrence).where(col(Occurrence.reminder_id) == reminder_id))
    session.delete(reminder)
    session.commit()
    return True


# --- what the user does with a reminder message ------------------------------------------------


def get_occurrence(*, session: Session, user_id: int, occurrence_id: int) -> Occurrence | None:
    """Return one of the user's occurrences; another user's id gives None."""
    occurrence = session.get(Occurrence, occurrence_id)
    return occurrence if occurrence is not None and occurrence.user_id == user_id else None


def finish_occurrence(
    *, session: Session, user_id: int, occurrence_id: int, status: OccurrenceStatus, now: datetime
) -> Occurrence | None:
    """Record Done or Skip for an occurrence the user was sent."""
    occurrence = get_occurrence(session=session, user_id=user_id, occurrence_id=occurrence_id)
    if occurrence is None:
        return None
    occurrence.status = status.value
    occurrence.outcome_at = now
    session.add(occurrence)
    session.commit()
    return occurrence


def snooze_occurrence(
    *, session: Session, user_id: int, occurrence_id: int, until: datetime, now: datetime
) -> Occurrence | None:
    """Schedule a one-off follow-up; the recurring schedule does not move."""
    occurrence = get_occurrence(session=session, user_id=user_id, occurrence_id=occurrence_id)
    if occurrence is None:
        return None
    occurrence.status = OccurrenceStatus.SNOOZED.value
    occurrence.due_at = until
    occurrence.snoozes += 1
    occurrence.outcome_at = now
    session.add(occurrence)
    session.commit()
    return occurrence
