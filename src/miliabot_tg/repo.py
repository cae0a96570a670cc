"""Database queries, each a keyword-only function taking the session it works in."""

from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, func, select

from miliabot_tg.models import User, UserPreferences, UserStatus

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
    changed = (
        user.status != UserStatus.ACTIVE
        or user.first_name != first_name
        or user.language_code != language_code
        or now - user.last_seen >= LAST_SEEN_RESOLUTION
    )
    if changed:
        user.status = UserStatus.ACTIVE
        user.first_name = first_name
        user.language_code = language_code
        user.last_seen = now
        session.add(user)
        session.commit()
    return user, False


def mark_blocked(*, session: Session, user_id: int) -> None:
    """Stop messaging a user who blocked the bot or whose chat is gone."""
    user = session.get(User, user_id)
    if user is not None and user.status == UserStatus.ACTIVE:
        user.status = UserStatus.BLOCKED
        session.add(user)
        session.commit()


def forget_user(*, session: Session, user_id: int) -> None:
    """Erase a user's personal data, keeping only the id and the fact they left."""
    session.exec(delete(UserPreferences).where(col(UserPreferences.user_id) == user_id))
    user = session.get(User, user_id)
    if user is not None:
        user.status = UserStatus.DELETED
        user.first_name = ""
        user.language_code = None
        user.timezone = None
        session.add(user)
    session.commit()


def count_users(*, session: Session, status: UserStatus | None = None) -> int:
    """Count users, optionally of one status."""
    query = select(func.count()).select_from(User)
    if status is not None:
        query = query.where(col(User.status) == status.value)
    return session.exec(query).one()
