"""Three `miliabot run` processes on one PostgreSQL database, as in production.

10,000 reminders fall due at once and a broadcast goes to 5,000 users while three bot
processes share the database and one Bot API stand-in (on this test's event loop, over
loopback). Half-way the poller is killed with SIGKILL: another process must take over
polling (a message sent then is answered) and its claims (everything still arrives), with
duplicates within the README's bound and Telegram's global rate never exceeded.

To keep CI short the global rate is 400 messages a second (Telegram's is 30), shared by
the three processes (about 133 each). On an idle 2-core machine the sends take about a
minute; on a loaded one (load average 6) the whole test took 4.6 minutes, sending
15,017 messages (17 duplicates) at most 273 in any second, with no 429.
"""

import asyncio
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, func, insert, select

from miliabot_tg import broadcasts, repo
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.models import Delivery, DispatcherHeartbeat, Occurrence, Reminder, User, utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.test_processes import _env

pytestmark = pytest.mark.postgres

REMINDED = range(20_000, 30_000)  # one reminder each; the first half get the broadcast too
BROADCAST_TO = range(20_000, 25_000)
RATE = 400.0
NEWS = "Cluster news: the guide has a new topic."
VISITOR = 1001  # writes to the bot after the poller is killed
USERS: Table = User.__table__  # type: ignore[attr-defined]
REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]
OCCURRENCES: Table = Occurrence.__table__  # type: ignore[attr-defined]
DELIVERIES: Table = Delivery.__table__  # type: ignore[attr-defined]


def _seed(url: str, due_in: timedelta) -> None:
    """Users and reminders, all falling due at one moment a little ahead."""
    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    due = now + due_in
    with new_session(engine) as session:
        repo.touch_user(session=session, user_id=1, first_name="Op", language_code="en", now=now)
        template = {}
        for kind in ("sunscreen", "moisturize"):
            spec = parse_remind(f"{kind} 08:30 daily", today=now.date())
            made = repo.add_reminder(
                session=session, user_id=1, spec=spec, now=now, default_key="UTC"
            )
            template[kind] = {"kind": made.kind, "label": made.label, "rule": made.rule}
        session.exec(REMINDERS.delete())
        session.commit()
    users = [
        {"id": u, "first_name": "U", "status": "active", "first_seen": now, "last_seen": now}
        for u in REMINDED
    ]
    reminders = [
        {
            **template["sunscreen" if u in BROADCAST_TO else "moisturize"],
            "user_id": u,
            "paused": False,
            "next_due_at": due,
            "created_at": now,
            "updated_at": now,
        }
        for u in REMINDED
    ]
    with engine.begin() as conn:
        conn.execute(insert(USERS), users)
        conn.execute(insert(REMINDERS), reminders)
    engine.dispose()


def _max_per_second(times: list[float]) -> int:
    """The most sends in any one-second window."""
    times, most, first = sorted(times), 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_three_processes_share_the_work_and_survive_losing_the_poller(
    postgres_url: str, tmp_path: Path
) -> None:
    # Time for the three to start and learn of one another (a heartbeat every 10 s) before
    # the work falls due, so that each sends at a third of the rate from the first message.
    due_in = timedelta(seconds=60)
    await asyncio.to_thread(_seed, postgres_url, due_in)
    due_at = time.monotonic() + due_in.total_seconds()
    engine = make_engine(postgres_url)

    async with StandIn(global_rate=RATE, chat_rate=None, clock=time.monotonic) as standin:
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=postgres_url,
            MILIABOT_GLOBAL_RATE=str(RATE),
            MILIABOT_CLAIM_LEASE_SECONDS="20",
        )
        logs = [tmp_path / f"bot{i}.log" for i in range(3)]
        processes = []
        for log in logs:
            with log.open("wb") as out:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "miliabot_tg",
                        "run",
                        env=env,
                        cwd=tmp_path,
                        stdout=out,
                        stderr=out,
                    )
                )

        def text_of(i: int) -> str:
            return logs[i].read_text()

        def pollers() -> list[int]:
            return [i for i in range(3) if "this process polls Telegram" in text_of(i)]

        def alive() -> int:
            with engine.connect() as conn:
                beats = conn.execute(select(func.count()).select_from(DispatcherHeartbeat))
                return int(beats.scalar_one())

        def sends() -> list[float]:
            return [c.at for c in standin.calls_to("sendMessage") if c.ok]

        try:
            await standin.wait_for(lambda: len(pollers()) == 1, timeout=120)
            (poller,) = pollers()
            await standin.wait_for(
                lambda: alive() == 3, timeout=max(1.0, due_at - time.monotonic())
            )
            await asyncio.sleep(max(0.0, due_at - time.monotonic()))
            with engine.begin() as conn:
                news = broadcasts.create_draft(
                    conn,
                    created_by=0,
                    now=utcnow(),
                    text=NEWS,
                    audience=broadcasts.Audience(kind="sunscreen"),
                )
            recipients = await asyncio.to_thread(broadcasts.start, engine, news, utcnow(), "UTC")
            assert recipients == len(BROADCAST_TO)

            total = len(REMINDED) + len(BROADCAST_TO)
            await standin.wait_for(lambda: len(sends()) >= total // 2, timeout=600)
            processes[poller].kill()  # SIGKILL: its claims and its poll are left behind
            await processes[poller].wait()
            killed_at = time.monotonic()
            assert len(sends()) < total, "the kill must land in the middle of the work"

            standin.send_message("/help", user_id=VISITOR)
            await standin.wait_for(lambda: standin.chat(VISITOR), timeout=20)
            answered_in = time.monotonic() - killed_at
            await standin.wait_for(lambda: len(pollers()) == 2, timeout=5)

            await standin.wait_for(lambda: len(sends()) >= total, timeout=900)
            await standin.settle(quiet=1.0)
        except BaseException:
            for i in range(3):
                print(f"--- bot {i}\n{text_of(i)[-3000:]}")
            raise
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), timeout=30)
        polls = standin.calls_to("getUpdates")
        conflicts = [c for c in polls if c.status == 409]
        rate_limited = standin.rate_limited
        sent = sends()
        reminded = dict.fromkeys(REMINDED, 0)
        announced = dict.fromkeys(BROADCAST_TO, 0)
        for user in REMINDED:
            for message in standin.chat(user):
                if message.plain.startswith(NEWS):
                    announced[user] += 1
                else:
                    reminded[user] += 1

    print(
        f"sent {len(sent)} in {max(sent) - min(sent):.1f} s, at most {_max_per_second(sent)} "
        f"in one second (limit {RATE:.0f}); 429s {rate_limited}; the visitor answered "
        f"{answered_in:.1f} s after the kill"
    )
    assert [p.returncode for i, p in enumerate(processes) if i != poller] == [0, 0]
    assert min(reminded.values()) >= 1, "every reminder arrived"
    assert min(announced.values()) >= 1, "every announcement arrived"
    # Only the killed process's sends on the wire and its unrecorded outcomes (one group
    # per engine) may arrive twice (README, "The duplicate window").
    policy = DispatchPolicy()
    duplicates = (
        sum(reminded.values()) - len(REMINDED) + sum(announced.values()) - len(BROADCAST_TO)
    )
    print(f"duplicates: {duplicates}")
    assert duplicates <= policy.concurrency + 2 * policy.flush_every
    assert rate_limited == 0
    assert _max_per_second(sent) <= RATE
    # One poller at a time: the only 409 is the killed poller's abandoned long poll,
    # ended when its successor asked.
    assert len(conflicts) <= 1
    for i in range(3):
        assert "409 Conflict" not in text_of(i)
        assert DEFAULT_TOKEN not in text_of(i)
    with engine.connect() as conn:
        for table, count in ((OCCURRENCES, len(REMINDED)), (DELIVERIES, len(BROADCAST_TO))):
            statuses = conn.execute(select(table.c.status, func.count()).group_by(table.c.status))
            assert {row[0]: row[1] for row in statuses} == {"sent": count}
    engine.dispose()
