"""The history behind /progress, and the weekly summary's switch: queries, keyword-only.

The weekly summary is a hidden reminder of kind "weekly" (Sunday 19:00 in the user's
zone), so the reminder engine schedules, paces and records it like any reminder, and a
timezone change, /stop or a block move it as they move the others. Its `paused` flag is
the user's switch; a user without the row has never switched it, and it is on.
"""

from datetime import datetime, timedelta
from typing import Final

from sqlmodel import Session, col, select

from miliabot_tg import repo
from miliabot_tg.models import Occurrence, Reminder, ReminderKind
from miliabot_tg.progress import Progress, Record, Tracked, progress

WEEKLY: Final = ReminderKind.WEEKLY.value
WEEKLY_RULE: Final = "19:00|sun"
WEEKLY_LABEL: Final = "Weekly summary"
# Streaks look back this far at most (history is kept 400 days by default).
LOOK_BACK: Final = timedelta(days=400)


def load_progress(
    *, session: Session, user_id: int, now: datetime, default_key: str
) -> Progress | None:
    """The user's progress as of `now`; None for a user we do not know."""
    user = repo.get_user(session=session, user_id=user_id)
    if user is None:
        return None
    prefs = repo.get_preferences(session=session, user_id=user_id)
    all_paused = prefs is not None and prefs.reminders_paused
    reminders = repo.list_reminders(session=session, user_id=user_id)
    tracked = [
        Tracked(r.id or 0, r.kind, r.label, paused=r.paused or all_paused) for r in reminders
    ]
    query = select(
        Occurrence.reminder_id, Occurrence.scheduled_for, Occurrence.status, Occurrence.snoozes
    ).where(
        col(Occurrence.user_id) == user_id,
        col(Occurrence.reminder_id).in_([t.reminder_id for t in tracked]),
        col(Occurrence.scheduled_for) >= now - LOOK_BACK,
    )
    records = [Record(*row) for row in session.exec(query)]
    return progress(tracked, records, repo.user_zone(user, default_key), now)


def weekly_row(*, session: Session, user_id: int) -> Reminder | None:
    """The user's weekly summary reminder, if it was ever made."""
    query = select(Reminder).where(col(Reminder.user_id) == user_id, col(Reminder.kind) == WEEKLY)
    return session.exec(query.order_by(col(Reminder.id))).first()


def weekly_on(*, session: Session, user_id: int) -> bool:
    """Whether the user gets the weekly summary (on unless they turned it off)."""
    row = weekly_row(session=session, user_id=user_id)
    return row is None or not row.paused


def ensure_weekly(
    *, session: Session, user_id: int, now: datetime, default_key: str
) -> Reminder | None:
    """Make the weekly summary for a user with reminders, on, unless it exists already.

    Called when a reminder is added: the summary is on by default for people with
    reminders. A user who turned it off keeps it off. Commits.
    """
    row = weekly_row(session=session, user_id=user_id)
    if row is not None:
        return row
    return set_weekly(session=session, user_id=user_id, on=True, now=now, default_key=default_key)


def set_weekly(
    *, session: Session, user_id: int, on: bool, now: datetime, default_key: str
) -> Reminder | None:
    """Switch the weekly summary on or off; return its row (None for an unknown user)."""
    user = repo.get_user(session=session, user_id=user_id)
    if user is None:
        return None
    row = weekly_row(session=session, user_id=user_id)
    if row is None:
        made = Reminder(
            user_id=user_id,
            kind=WEEKLY,
            label=WEEKLY_LABEL,
            rule=WEEKLY_RULE,
            paused=not on,
            created_at=now,
            updated_at=now,
        )
        row = repo.add_hidden_reminder(session=session, reminder=made)
    # Commits, and plans the next Sunday (or nothing while it or everything is paused).
    return repo.set_reminder_paused(
        session=session,
        user_id=user_id,
        reminder_id=row.id or 0,
        paused=not on,
        now=now,
        default_key=default_key,
    )
