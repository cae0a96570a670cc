"""The reminder engine on a bad day: crowded minutes, slow pacing, database faults, big ids."""

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlmodel import col

from miliabot_tg import repo
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import (
    Dispatcher,
    DispatchPolicy,
    claim_limit,
    instance_name,
)
from miliabot_tg.models import DispatcherHeartbeat, Occurrence, Reminder, utcnow
from miliabot_tg.pacing import Pacer
from miliabot_tg.schedule import parse_remind
from tests.harness import USER, Harness, running_bot
from tests.test_dispatch import _at, _occurrences, _remind, _user


@pytest.fixture
async def bot(tmp_path: Path, database_url: str) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, database_url=database_url) as harness:
        yield harness
        assert harness.failures() == []


def _make_due_now(h: Harness, reminder: Reminder, when: datetime) -> None:
    with new_session(h.engine) as session:
        stored = session.get(Reminder, reminder.id)
        assert stored is not None
        stored.next_due_at = when
        session.add(stored)
        session.commit()


def _other(h: Harness, name: str, policy: DispatchPolicy | None = None) -> Dispatcher:
    pacer = h.app.bot.rate_limiter
    assert isinstance(pacer, Pacer)
    return Dispatcher(
        bot=h.app.bot,
        engine=h.engine,
        guide=h.guide,
        clock=h.dispatcher.clock,
        default_tz="UTC",
        policy=policy or h.dispatcher.policy,
        instance=name,
        send_rate=lambda: pacer.global_rate,
    )


# --- one message per person -------------------------------------------------------------------


async def test_reminders_due_together_arrive_as_one_message(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    for line in ("sunscreen 08:30 daily", "moisturize 08:30 daily", "water <b>x</b> 08:30 daily"):
        _remind(bot, line)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    assert await bot.dispatcher.run_cycle() == 3

    (message,) = bot.standin.chat(USER)
    assert message.plain.startswith("🔔 Time for: sunscreen, moisturize, water <b>x</b>")
    done = [label for row in message.buttons for label, _ in row if label.startswith("✅")]
    assert done == ["✅ Sunscreen", "✅ Moisturize", "✅ water <b>x</b>"]
    occurrences = _occurrences(bot)
    assert {(o.status, o.message_id) for o in occurrences} == {("sent", message.message_id)}
    assert all(len((data or "").encode()) <= 64 for row in message.buttons for _, data in row)


async def test_a_crowded_minute_is_split_into_readable_messages(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    for n in range(20):
        _remind(bot, f"task {n} 08:30 daily")
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    assert await bot.dispatcher.run_cycle() == 20
    messages = bot.standin.chat(USER)
    assert [len(m.buttons) for m in messages] == [8, 8, 4]
    assert {o.status for o in _occurrences(bot)} == {"sent"}


async def test_one_users_crowded_minute_does_not_hold_up_other_users(tmp_path: Path) -> None:
    """Fifty reminders of one person at one minute wait for that chat only."""
    policy = DispatchPolicy(concurrency=4)
    async with running_bot(tmp_path, chat_rate=2.0, policy=policy) as h:
        h.clock.now = _at(date(2026, 11, 26), 8, 0)
        heavy, others = 500, list(range(600, 620))
        _user(h, heavy)
        for n in range(50):
            _remind(h, f"task {n} 08:30 daily", heavy)
        for user_id in others:
            _user(h, user_id)
            _remind(h, "sunscreen 08:30 daily", user_id)
        h.clock.now = _at(date(2026, 11, 26), 8, 30)
        assert await h.dispatcher.run_cycle() == 70

        sends = [c for c in h.standin.calls_to("sendMessage") if c.ok]
        order = [int(c.params["chat_id"]) for c in sends]
        heavy_positions = [i for i, chat in enumerate(order) if chat == heavy]
        assert len(heavy_positions) == 7, "fifty reminders in seven messages of at most eight"
        last_other = max(i for i, chat in enumerate(order) if chat != heavy)
        assert last_other < heavy_positions[1], "everyone else went before the second one"
        assert h.failures() == []


# --- claims that never run out under a live sender -----------------------------------------------


def test_a_cycle_claims_only_what_it_can_send_in_half_a_lease() -> None:
    policy = DispatchPolicy(lease=timedelta(seconds=60), batch=500)
    assert claim_limit(policy, 30.0) == 500
    assert claim_limit(policy, 7.5) == 225  # four processes sharing 30 messages a second
    assert claim_limit(policy, 0.1) == 3
    assert claim_limit(policy, float("inf")) == 500


async def test_slow_pacing_and_a_long_429_never_let_a_claim_expire_under_its_sender(
    tmp_path: Path, database_url: str
) -> None:
    """Two processes, a lease shorter than the batch takes to send: every reminder once."""
    policy = DispatchPolicy(lease=timedelta(seconds=2), heartbeat=timedelta(seconds=0.5), batch=500)
    async with running_bot(
        tmp_path, database_url=database_url, global_rate=40.0, clock=utcnow, policy=policy
    ) as h:
        users = list(range(3000, 3100))
        for user_id in users:
            _user(h, user_id)
            reminder = _remind(h, "sunscreen 08:30 daily", user_id)
            _make_due_now(h, reminder, utcnow())
        # A 429 longer than the lease, early in the batch.
        h.standin.fail_next("sendMessage", status=429, retry_after=3)
        first, second = h.dispatcher, _other(h, "second")

        async def keep_dispatching(dispatcher: Dispatcher) -> None:
            while True:
                await dispatcher.run_cycle()
                await asyncio.sleep(0.1)

        loops = [asyncio.create_task(keep_dispatching(d)) for d in (first, second)]
        try:
            await h.standin.wait_for(
                lambda: all(h.standin.chat(u) for u in users) or None, timeout=30
            )
            await asyncio.sleep(2.5)  # long enough for any expired claim to be sent again
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        counts = {u: len(h.standin.chat(u)) for u in users}
        assert set(counts.values()) == {1}, {u: n for u, n in counts.items() if n != 1}
        h.allow_failures("Too Many Requests: retry after 3")
        assert h.failures() == []


async def test_a_long_cycle_keeps_saying_it_is_alive(tmp_path: Path) -> None:
    policy = DispatchPolicy(heartbeat=timedelta(seconds=0.3))
    async with running_bot(tmp_path, global_rate=30.0, clock=utcnow, policy=policy) as h:
        for user_id in range(4000, 4045):  # about a second and a half at 30 a second
            _user(h, user_id)
            _make_due_now(h, _remind(h, "sunscreen 08:30 daily", user_id), utcnow())
        started = utcnow()
        assert await h.dispatcher.run_cycle() == 45
        ended = utcnow()
        assert ended - started > timedelta(seconds=1)
        with new_session(h.engine) as session:
            beat = session.get(DispatcherHeartbeat, h.dispatcher.instance)
        assert beat is not None
        assert beat.seen_at > started + timedelta(seconds=0.5), "heartbeats went on mid-cycle"


# --- a dispatcher that never stops ---------------------------------------------------------


async def test_a_database_failure_after_a_cycle_still_plans_the_next_wake_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = DispatchPolicy(retry_soon=timedelta(seconds=0.2))
    async with running_bot(tmp_path, dispatch=True, clock=utcnow, policy=policy) as h:
        _user(h)
        reminder = _remind(h, "sunscreen 08:30 daily")
        real_next_due = h.dispatcher.next_due
        failures: list[int] = []

        def next_due_fails_once() -> datetime | None:
            if not failures:
                failures.append(1)
                raise OSError("the database went away")
            return real_next_due()

        # Due in a moment; the cycle that runs now finds nothing due, then cannot plan.
        _make_due_now(h, reminder, utcnow() + timedelta(seconds=1))
        monkeypatch.setattr(h.dispatcher, "next_due", next_due_fails_once)
        h.dispatcher.wake(utcnow())
        message = await h.standin.wait_for(lambda: h.standin.last(USER), timeout=5)
        assert "sunscreen" in message.plain.lower()
        assert h.failures() == []


async def test_the_watchdog_restarts_a_dispatcher_whose_cycle_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = DispatchPolicy(idle_poll=timedelta(seconds=0.2))
    async with running_bot(tmp_path, dispatch=True, clock=utcnow, policy=policy) as h:
        _user(h)
        reminder = _remind(h, "sunscreen 08:30 daily")
        real_cycle = h.dispatcher.run_cycle
        hung: list[int] = []

        async def hangs_once() -> int:
            if not hung:
                hung.append(1)
                await asyncio.Event().wait()  # a bug, or a call that never returns
            return await real_cycle()

        monkeypatch.setattr(h.dispatcher, "run_cycle", hangs_once)
        _make_due_now(h, reminder, utcnow())
        h.dispatcher.wake(utcnow())
        message = await h.standin.wait_for(lambda: h.standin.last(USER), timeout=5)
        assert hung == [1]
        assert "sunscreen" in message.plain.lower()
        assert h.failures() == []


# --- ids and history ---------------------------------------------------------------------------


async def test_a_long_hostname_still_gives_a_working_heartbeat(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "pod-" + "x" * 250)
    dispatcher = Dispatcher(
        bot=bot.app.bot, engine=bot.engine, guide=bot.guide, clock=bot.clock, default_tz="UTC"
    )
    assert len(dispatcher.instance) <= 64
    assert dispatcher.heartbeat(bot.clock()) == 1
    assert instance_name("h" * 300, 4_194_304, "abcdef12").endswith(":4194304:abcdef12")


@pytest.mark.postgres
def test_ids_go_past_32_bits_on_a_populated_postgresql_database(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    from alembic import command

    from miliabot_tg.db import alembic_config

    command.upgrade(alembic_config(engine), "0003")
    now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, first_name, status, first_seen, last_seen)"
                " VALUES (1, 'Ann', 'active', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO reminders (user_id, kind, label, rule, paused, created_at,"
                " updated_at) VALUES (1, 'sunscreen', 'sunscreen', 'daily 08:30', false,"
                " :now, :now)"
            ),
            {"now": now},
        )
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT setval('occurrences_id_seq', 3000000000)"))
        conn.execute(text("SELECT setval('reminders_id_seq', 3000000000)"))
    with new_session(engine) as session:
        spec = parse_remind("moisturize 21:00 daily", today=now.date())
        reminder = repo.add_reminder(
            session=session, user_id=1, spec=spec, now=now, default_key="UTC"
        )
        assert reminder.id is not None and reminder.id > 2**31
        session.add(
            Occurrence(
                reminder_id=reminder.id,
                user_id=1,
                scheduled_for=now,
                due_at=now,
                status="pending",
            )
        )
        session.commit()
        stored = session.exec(select(func.max(col(Occurrence.id)))).one()  # type: ignore[call-overload]
        assert stored[0] > 2**31
    engine.dispose()


def _occurrence(engine: Engine, status: str, due_at: datetime, reminder_id: int) -> None:
    with new_session(engine) as session:
        session.add(
            Occurrence(
                reminder_id=reminder_id,
                user_id=USER,
                scheduled_for=due_at,
                due_at=due_at,
                status=status,
            )
        )
        session.commit()


async def test_old_history_is_pruned_in_small_batches(bot: Harness) -> None:
    now = bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    reminder = _remind(bot, "sunscreen 08:30 daily")
    assert reminder.id is not None
    for days in range(401, 411):
        _occurrence(bot.engine, "done", now - timedelta(days=days), reminder.id)
    _occurrence(bot.engine, "missed", now - timedelta(days=399), reminder.id)
    _occurrence(bot.engine, "pending", now - timedelta(days=500), reminder.id)
    pruner = _other(bot, "pruner", DispatchPolicy(prune_batch=3))
    assert pruner.prune_history(now) == 10
    left = sorted((o.status, (now - o.due_at).days) for o in _occurrences(bot))
    assert left == [("missed", 399), ("pending", 500)], "recent history and live work stay"


async def test_a_database_failure_mid_batch_stops_sending_until_outcomes_can_be_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What cannot be recorded would be sent again by whoever takes the claims over."""
    policy = DispatchPolicy(flush_every=4)
    async with running_bot(tmp_path, global_rate=50.0, policy=policy) as h:
        h.clock.now = _at(date(2026, 11, 26), 8, 0)
        users = list(range(5000, 5020))
        for user_id in users:
            _user(h, user_id)
            _remind(h, "sunscreen 08:30 daily", user_id)
        h.clock.now = _at(date(2026, 11, 26), 8, 30)
        real_record = h.dispatcher.record
        database_down = True

        def record(outcomes: list[object]) -> None:
            if database_down:
                raise OSError("the database went away")
            real_record(outcomes)  # type: ignore[arg-type]

        monkeypatch.setattr(h.dispatcher, "record", record)
        with pytest.raises(OSError, match="went away"):
            await h.dispatcher.run_cycle()
        sent_while_down = len(h.standin.calls_to("sendMessage"))
        assert sent_while_down < len(users) / 2, "sending stopped soon after the failure"

        database_down = False
        await h.dispatcher.run_cycle()  # records what it holds first, then sends the rest
        await h.dispatcher.run_cycle()
        assert all(len(h.standin.chat(u)) == 1 for u in users)
        assert {o.status for o in _occurrences(h)} == {"sent"}
        assert h.failures() == []


async def test_a_stopping_bot_gives_unsent_reminders_back_at_once(tmp_path: Path) -> None:
    async with running_bot(tmp_path, global_rate=50.0) as h:
        h.clock.now = _at(date(2026, 11, 26), 8, 0)
        users = list(range(5100, 5140))
        for user_id in users:
            _user(h, user_id)
            _remind(h, "sunscreen 08:30 daily", user_id)
        h.clock.now = _at(date(2026, 11, 26), 8, 30)
        stopping = False
        h.dispatcher.keep_going = lambda: not stopping
        cycle = asyncio.create_task(h.dispatcher.run_cycle())
        await h.standin.wait_for(lambda: len(h.standin.calls_to("sendMessage")) >= 5 or None)
        stopping = True
        await cycle
        sent = len(h.standin.calls_to("sendMessage"))
        assert sent < len(users)
        statuses = [o.status for o in _occurrences(h)]
        assert statuses.count("sent") == sent
        assert statuses.count("pending") == len(users) - sent, "given back, not left claimed"

        stopping = False  # the next start sends the rest at once, without waiting for a lease
        await h.dispatcher.run_cycle()
        assert all(len(h.standin.chat(u)) == 1 for u in users)


async def test_each_reminder_in_a_shared_message_is_answered_on_its_own(bot: Harness) -> None:
    bot.clock.now = _at(date(2026, 11, 26), 8, 0)
    _user(bot)
    for line in ("sunscreen 08:30 daily", "moisturize 08:30 daily", "water 08:30 daily"):
        _remind(bot, line)
    bot.clock.now = _at(date(2026, 11, 26), 8, 30)
    await bot.dispatcher.run_cycle()
    (message,) = bot.standin.chat(USER)

    after_done = await bot.press("✅ Sunscreen")
    assert after_done.message_id == message.message_id, "edited in place"
    assert "Sunscreen: ✅ Done" in after_done.plain
    left = [label for row in after_done.buttons for label, _ in row if label.startswith("✅")]
    assert left == ["✅ Moisturize", "✅ water"], "the others can still be answered"

    water_row = after_done.buttons[1]
    skip = next(data for label, data in water_row if label == "⏭")
    assert skip is not None
    await bot.handled(bot.standin.press_button(USER, message.message_id, skip))
    after_skip = bot.standin.chat(USER)[-1]
    assert "water: ⏭ Skipped" in after_skip.plain
    assert after_skip.buttons[0][0][0] == "✅ Moisturize"

    last = await bot.press("✅ Moisturize")
    assert last.buttons == [], "the last answer takes the last buttons away"
    statuses = {o.reminder_id: o.status for o in _occurrences(bot)}
    assert sorted(statuses.values()) == ["done", "done", "skipped"]
