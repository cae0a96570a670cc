"""The reminder engine through the real bot: due work is claimed, sent once, and recorded."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from miliabot_tg import repo
from miliabot_tg.db import new_session
from miliabot_tg.dispatch import Dispatcher, DispatchPolicy, plan_due, retry_delay
from miliabot_tg.models import Occurrence, Reminder, User
from miliabot_tg.pacing import Pacer
from miliabot_tg.schedule import QuietHours, next_occurrence, parse_remind
from miliabot_tg.timezones import zone_from_key
from tests.harness import USER, Harness, running_bot

BERLIN = "Europe/Berlin"


@pytest.fixture
async def bot(tmp_path: Path, database_url: str) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, database_url=database_url) as harness:
        yield harness
        assert harness.failures() == []


def _user(h: Harness, user_id: int = USER, *, zone: str = BERLIN) -> None:
    with new_session(h.engine) as session:
        repo.touch_user(
            session=session, user_id=user_id, first_name="Ann", language_code="en", now=h.clock()
        )
        repo.set_timezone(
            session=session, user_id=user_id, key=zone, now=h.clock(), default_key="UTC"
        )


def _remind(h: Harness, line: str, user_id: int = USER) -> Reminder:
    with new_session(h.engine) as session:
        spec = parse_remind(line, today=h.clock().date())
        return repo.add_reminder(
            session=session, user_id=user_id, spec=spec, now=h.clock(), default_key="UTC"
        )


def _occurrences(h: Harness, reminder_id: int | None = None) -> list[Occurrence]:
    with new_session(h.engine) as session:
        query = select(Occurrence).order_by(col(Occurrence.scheduled_for))
        if reminder_id is not None:
            query = query.where(col(Occurrence.reminder_id) == reminder_id)
        return list(session.exec(query))


def _reminder(h: Harness, reminder_id: int) -> Reminder:
    with new_session(h.engine) as session:
        found = session.get(Reminder, reminder_id)
        assert found is not None
        return found


def _at(day: date, hh: int, mm: int, zone: str = BERLIN) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=zone_from_key(zone)).astimezone(UTC)


# --- pure policy -------------------------------------------------------------------------------


def test_plan_due_collapses_recent_misses_and_drops_old_ones() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    due = [now - timedelta(hours=h) for h in (30, 5, 1.5, 1, 0.5)]
    send, missed = plan_due(due, now, timedelta(hours=2))
    assert send == now - timedelta(hours=0.5)
    assert missed == due[:-1]
    assert plan_due(due[:2], now, timedelta(hours=2)) == (None, due[:2])


def test_retry_delay_backs_off_and_caps() -> None:
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [5, 10, 20, 300, 300]


# --- the engine ------------------------------------------------------------------------------


async def test_a_due_reminder_is_sent_once_and_moves_to_its_next_time(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    assert reminder.next_due_at == _at(date(2026, 11, 26), 8, 30)

    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    assert await bot.dispatcher.run_cycle() == 1
    assert await bot.dispatcher.run_cycle() == 0, "nothing is sent twice"

    (message,) = bot.standin.chat(USER)
    assert "sunscreen" in message.plain.lower()
    labels = [label for row in message.buttons for label, _ in row]
    assert any("Done" in label for label in labels) and any("Skip" in label for label in labels)
    (occurrence,) = _occurrences(bot)
    assert (occurrence.status, occurrence.message_id, occurrence.late) == (
        "sent",
        message.message_id,
        False,
    )
    assert occurrence.scheduled_for == _at(date(2026, 11, 26), 8, 30)
    assert _reminder(bot, reminder.id or 0).next_due_at == _at(date(2026, 11, 27), 8, 30)


async def test_after_an_outage_recent_misses_collapse_into_one_late_message(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 23), 7, 0)
    _user(bot)
    reminder = _remind(bot, "water 08:00,08:30,09:00 daily")
    # The bot was down from the 23rd at 07:00 until the 26th at 09:30.
    bot.clock.now = _at(date(2026, 11, 26), 9, 30)
    assert await bot.dispatcher.run_cycle() == 1

    (message,) = bot.standin.chat(USER)
    assert "09:00" in message.plain, "the late message says when it was due"
    occurrences = _occurrences(bot, reminder.id)
    assert len(occurrences) == 12  # four days of three times
    sent = [o for o in occurrences if o.status == "sent"]
    assert [(o.scheduled_for, o.late) for o in sent] == [(_at(date(2026, 11, 26), 9, 0), True)]
    assert {o.status for o in occurrences if o not in sent} == {"missed"}
    assert _reminder(bot, reminder.id or 0).next_due_at == _at(date(2026, 11, 27), 8, 0)


async def test_an_outage_longer_than_the_grace_window_sends_nothing(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 7, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 10, 31)
    assert await bot.dispatcher.run_cycle() == 0
    assert bot.standin.chat(USER) == []
    assert [o.status for o in _occurrences(bot, reminder.id)] == ["missed"]


async def test_spring_forward_fires_at_the_first_valid_minute(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 3, 28), 3, 0)
    _user(bot)
    reminder = _remind(bot, "exfoliate 02:30 daily")
    # 02:30 does not exist in Berlin on 2026-03-29: clocks jump from 02:00 to 03:00.
    expected = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert reminder.next_due_at == expected
    bot.clock.now = expected
    assert await bot.dispatcher.run_cycle() == 1
    assert _reminder(bot, reminder.id or 0).next_due_at == _at(date(2026, 3, 30), 2, 30)


async def test_a_time_that_occurs_twice_in_the_fall_fires_once(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 10, 24), 12, 0)
    _user(bot, zone="America/New_York")
    reminder = _remind(bot, "moisturize 01:30 daily")
    # 01:30 happens twice in New York on 2026-11-01 (EDT, then EST).
    first = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    second = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    bot.clock.now = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    assert _reminder(bot, reminder.id or 0).next_due_at is not None
    for now in (datetime(2026, 10, 31, 5, 30, tzinfo=UTC), first, second):
        bot.clock.now = now
        await bot.dispatcher.run_cycle()
    sent = [o.scheduled_for for o in _occurrences(bot, reminder.id) if o.status == "sent"]
    assert sent == [datetime(2026, 10, 31, 5, 30, tzinfo=UTC), first]
    assert _reminder(bot, reminder.id or 0).next_due_at == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


async def test_quiet_hours_hold_a_reminder_until_they_end(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 12, 0)
    _user(bot)
    with new_session(bot.engine) as session:
        repo.set_quiet_hours(
            session=session,
            user_id=USER,
            quiet=QuietHours(time(22, 0), time(7, 0)),
            now=bot.clock(),
        )
    reminder = _remind(bot, "water 23:00 daily")
    bot.clock.now = _at(date(2026, 11, 26), 23, 0)
    assert await bot.dispatcher.run_cycle() == 0
    (pending,) = _occurrences(bot, reminder.id)
    assert (pending.status, pending.due_at) == ("pending", _at(date(2026, 11, 27), 7, 0))
    bot.clock.now = _at(date(2026, 11, 27), 7, 0)
    assert await bot.dispatcher.run_cycle() == 1


async def test_a_snooze_sends_a_follow_up_without_moving_the_schedule(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    await bot.dispatcher.run_cycle()
    (occurrence,) = _occurrences(bot)
    with new_session(bot.engine) as session:
        repo.snooze_occurrence(
            session=session,
            user_id=USER,
            occurrence_id=occurrence.id or 0,
            until=_at(date(2026, 11, 26), 8, 45),
            now=bot.clock(),
        )
    bot.clock.now = _at(date(2026, 11, 26), 8, 45)
    assert await bot.dispatcher.run_cycle() == 1
    follow_up = bot.standin.chat(USER)[-1]
    assert len(bot.standin.chat(USER)) == 2
    assert "snooze" in follow_up.plain.lower()
    (again,) = _occurrences(bot)
    assert (again.status, again.snoozes) == ("sent", 1)
    assert _reminder(bot, reminder.id or 0).next_due_at == _at(date(2026, 11, 27), 8, 30)


async def test_a_user_who_blocked_the_bot_is_stopped_until_they_come_back(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    bot.standin.block(USER)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    await bot.dispatcher.run_cycle()
    with new_session(bot.engine) as session:
        user = session.get(User, USER)
        assert user is not None and user.status == "blocked"
    assert _reminder(bot, reminder.id or 0).next_due_at is None
    assert [o.status for o in _occurrences(bot)] == ["failed"]

    bot.clock.now = _at(date(2026, 11, 27), 12, 0)
    await bot.say("/start")  # writing to the bot unblocks it and brings reminders back
    assert _reminder(bot, reminder.id or 0).next_due_at == _at(date(2026, 11, 28), 8, 30)
    bot.allow_failures("Forbidden: bot was blocked by the user")


async def test_a_chat_that_no_longer_exists_stops_reminders(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    bot.standin.forget(USER)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    await bot.dispatcher.run_cycle()
    assert _reminder(bot, reminder.id or 0).next_due_at is None
    bot.allow_failures("Bad Request: chat not found")


async def test_a_429_hands_the_wait_back_to_the_database(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    _remind(bot, "sunscreen 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    bot.standin.fail_next("sendMessage", status=429, retry_after=2)
    await bot.dispatcher.run_cycle()
    (occurrence,) = _occurrences(bot)
    retry_at = bot.clock.now + timedelta(seconds=2)
    assert (occurrence.status, occurrence.due_at) == ("pending", retry_at)
    bot.clock.advance(timedelta(seconds=1))
    assert await bot.dispatcher.run_cycle() == 0
    bot.clock.advance(timedelta(seconds=1))
    assert await bot.dispatcher.run_cycle() == 1
    assert [o.status for o in _occurrences(bot)] == ["sent"]
    bot.allow_failures("Too Many Requests: retry after 2")


async def test_server_errors_are_retried_until_the_grace_window_ends_then_missed(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    _remind(bot, "sunscreen 08:30 daily")
    due = _at(date(2026, 11, 26), 8, 30)
    bot.clock.now = due
    bot.standin.fail_next("sendMessage", status=502, count=1000)
    while True:
        await bot.dispatcher.run_cycle()
        (occurrence,) = _occurrences(bot)
        if occurrence.status != "pending":
            break
        assert occurrence.due_at > bot.clock.now, "each retry is planned for later"
        bot.clock.now = occurrence.due_at
    grace = DispatchPolicy().grace
    assert occurrence.status == "missed", "an outage is recorded as missed, not failed"
    assert due + grace - timedelta(minutes=5) <= bot.clock.now <= due + grace
    assert occurrence.attempts > 20, "retried for the whole window, not given up by count"
    bot.allow_failures("Bad Gateway")


async def test_a_send_that_recovers_late_in_the_grace_window_is_delivered(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    _remind(bot, "sunscreen 08:30 daily")
    due = _at(date(2026, 11, 26), 8, 30)
    bot.clock.now = due
    # 25 failures with backoff capped at 5 minutes: Telegram is back after about 100 minutes.
    bot.standin.fail_next("sendMessage", status=502, count=25)
    while True:
        await bot.dispatcher.run_cycle()
        (occurrence,) = _occurrences(bot)
        if occurrence.status != "pending":
            break
        bot.clock.now = occurrence.due_at
    assert occurrence.status == "sent"
    assert bot.clock.now - due > timedelta(minutes=90)
    (message,) = bot.standin.chat(USER)
    assert "sunscreen" in message.plain.lower()
    bot.allow_failures("Bad Gateway")


async def test_a_claim_left_by_a_dead_process_is_taken_over_after_the_lease(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    _remind(bot, "sunscreen 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    dead = Dispatcher(
        bot=bot.app.bot,
        engine=bot.engine,
        guide=bot.guide,
        clock=bot.clock,
        default_tz="UTC",
        instance="dead",
    )
    dead.materialize(bot.clock())
    assert len(dead.claim(bot.clock())) == 1  # ... and then the process died
    assert await bot.dispatcher.run_cycle() == 0, "a live claim is respected"
    bot.clock.advance(DispatchPolicy().lease + timedelta(seconds=1))
    assert await bot.dispatcher.run_cycle() == 1
    assert [o.status for o in _occurrences(bot)] == ["sent"]


async def test_two_dispatchers_never_send_the_same_occurrence(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    users = range(5000, 5120)
    for user_id in users:
        _user(bot, user_id)
        _remind(bot, "sunscreen 08:30 daily", user_id)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    policy = DispatchPolicy(batch=25)
    first, second = (
        Dispatcher(
            bot=bot.app.bot,
            engine=bot.engine,
            guide=bot.guide,
            clock=bot.clock,
            default_tz="UTC",
            policy=policy,
            instance=name,
        )
        for name in ("first", "second")
    )
    counts = await asyncio.gather(first.run_cycle(), second.run_cycle())
    assert sum(counts) == len(users)
    assert all(len(bot.standin.chat(user_id)) == 1 for user_id in users)
    assert {o.status for o in _occurrences(bot)} == {"sent"}


async def test_changing_timezone_moves_the_next_occurrence_at_once(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 6, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    with new_session(bot.engine) as session:
        repo.set_timezone(
            session=session, user_id=USER, key="Asia/Kolkata", now=bot.clock(), default_key="UTC"
        )
    rule = parse_remind("sunscreen 08:30 daily", today=date(2026, 11, 26)).rule
    expected = next_occurrence(rule, zone_from_key("Asia/Kolkata"), bot.clock())
    assert _reminder(bot, reminder.id or 0).next_due_at == expected
    assert expected == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


async def test_the_dispatcher_wakes_by_itself_when_a_reminder_falls_due(tmp_path: Path) -> None:
    """Real clock, real JobQueue: a reminder due in half a second arrives on time."""
    from miliabot_tg.models import utcnow

    async with running_bot(tmp_path, dispatch=True, clock=utcnow) as h:
        _user(h)
        reminder = _remind(h, "sunscreen 08:30 daily")
        due = utcnow() + timedelta(seconds=0.5)
        with new_session(h.engine) as session:
            stored = session.get(Reminder, reminder.id)
            assert stored is not None
            stored.next_due_at = due
            session.add(stored)
            session.commit()
        h.dispatcher.wake(due)  # what the handlers do after adding or editing a reminder
        message = await h.standin.wait_for(lambda: h.standin.last(USER), timeout=5)
        assert len(h.standin.calls_to("sendMessage")) == 1
        lateness = utcnow() - due
        assert "sunscreen" in message.plain.lower()
        assert timedelta(0) <= lateness < timedelta(seconds=1), lateness
        assert h.failures() == []


async def test_processes_sharing_a_database_split_telegrams_global_rate(bot: Harness) -> None:
    pacer = bot.app.bot.rate_limiter
    assert isinstance(pacer, Pacer)
    full = pacer.global_rate
    await bot.dispatcher.run_cycle()
    assert pacer.global_rate == full

    other = Dispatcher(
        bot=bot.app.bot,
        engine=bot.engine,
        guide=bot.guide,
        clock=bot.clock,
        default_tz="UTC",
        instance="other-process",
    )
    assert other.heartbeat(bot.clock()) == 2
    bot.clock.advance(DispatchPolicy().heartbeat)
    await bot.dispatcher.run_cycle()
    assert pacer.global_rate == full / 2

    other.leave()  # a clean shutdown hands its share back at the next heartbeat
    bot.clock.advance(DispatchPolicy().heartbeat)
    await bot.dispatcher.run_cycle()
    assert pacer.global_rate == full

    other.heartbeat(bot.clock())
    bot.clock.advance(timedelta(minutes=5))  # ... and a crashed one once it goes silent
    await bot.dispatcher.run_cycle()
    assert pacer.global_rate == full


async def test_a_reminder_due_at_the_moment_of_a_timezone_change_still_fires(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    with new_session(bot.engine) as session:
        repo.set_timezone(
            session=session, user_id=USER, key="Asia/Kolkata", now=bot.clock(), default_key="UTC"
        )
    assert await bot.dispatcher.run_cycle() == 1
    # The next one follows the new zone: 08:30 in Kolkata is 03:00 UTC.
    assert _reminder(bot, reminder.id or 0).next_due_at == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


async def test_a_stopping_bot_takes_no_new_batch_and_leaves_the_rest_in_the_database(
    bot: Harness,
) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    for user_id in range(7000, 7030):
        _user(bot, user_id)
        _remind(bot, "sunscreen 08:30 daily", user_id)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    stopping = Dispatcher(
        bot=bot.app.bot,
        engine=bot.engine,
        guide=bot.guide,
        clock=bot.clock,
        default_tz="UTC",
        policy=DispatchPolicy(batch=10),
        keep_going=lambda: False,
    )
    await stopping.run_cycle()
    assert bot.standin.chat(7000) == [], "a stopping bot sends nothing more"
    assert {(o.status, o.claimed_by) for o in _occurrences(bot)} == {("pending", None)}
    assert await bot.dispatcher.run_cycle() == 30, "the next start sends it all at once"
