"""SIGKILL at random moments while due reminders and a broadcast go out; restart; count.

Every trial seeds due reminders (a tenth of them overdue beyond the grace window, which
the outage policy records as missed and never sends) and a running broadcast, starts
`miliabot run` (one process on SQLite, three on PostgreSQL), kills one process with
SIGKILL once a random share of the messages has gone out, starts a replacement, and
waits for the end. Lost: a due occurrence neither delivered nor recorded missed, or a
recipient never reached. Duplicates must stay within the README's bound: the messages
the killed process had on the wire plus its unrecorded outcomes, for reminders and for
the broadcast each.
"""

import asyncio
import random
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from miliabot_tg import broadcasts as store
from miliabot_tg import repo
from miliabot_tg.broadcasts import DELIVERIES
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import OCCURRENCES, DispatchPolicy
from miliabot_tg.models import utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.robustness.results import record, size
from tests.test_processes import _env, _start_bot

REMINDERS = size(2_000, 20_000)
RECIPIENTS = size(1_000, 10_000)
# Per process count: CI runs one of each (a PostgreSQL trial takes ~3 minutes on the loaded
# 2-vCPU machine); `make soak` runs 20 in all.
TRIALS = size(1, 10)
NEWS = "Soak news 📣"
FIRST_USER = 50_000


def _seed(
    url: str, reminders: int = REMINDERS, recipients: int = RECIPIENTS
) -> tuple[int, set[int], set[int], set[int]]:
    """Users with one due reminder each; the first RECIPIENTS have announcements on.

    Returns the broadcast id, the users due within grace, those overdue beyond it, and the
    recipients.
    """
    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    users = range(FIRST_USER, FIRST_USER + max(reminders, recipients))
    overdue = {u for u in users[:reminders] if u % 10 == 0}
    with new_session(engine) as session:
        for user_id in users:
            repo.touch_user(
                session=session, user_id=user_id, first_name="U", language_code="en", now=now
            )
        session.commit()
        for user_id in users[:reminders]:
            spec = parse_remind("sunscreen 08:30 daily", today=now.date())
            reminder = repo.add_reminder(
                session=session, user_id=user_id, spec=spec, now=now, default_key="UTC"
            )
            late = timedelta(hours=3) if user_id in overdue else timedelta(minutes=1)
            reminder.next_due_at = now - late
            session.add(reminder)
        session.commit()
    with engine.begin() as conn:
        for user_id in users[recipients:]:
            store.set_announcements(conn, user_id, False, now)
        broadcast_id = store.create_draft(conn, created_by=0, now=now, text=NEWS)
    store.start(engine, broadcast_id, now, "UTC")
    engine.dispose()
    due = set(users[:reminders]) - overdue
    return broadcast_id, due, overdue, set(users[:recipients])


async def until(check: Callable[[], bool], timeout: float, every: float = 0.25) -> None:
    """Poll `check` now and then: the stand-in's wait_for runs it on every call, which at
    tens of thousands of messages, each check counting them all, would starve the stand-in."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        await asyncio.sleep(every)


async def _trial(url: str, tmp_path: Path, processes: int, seed: int) -> None:
    rng = random.Random(seed)
    broadcast_id, due, overdue, recipients = _seed(url)
    total = len(due) + len(recipients)
    kill_at = int(total * rng.uniform(0.05, 0.9))

    async with StandIn(global_rate=None, chat_rate=None) as standin:

        def counts() -> tuple[dict[int, int], dict[int, int]]:
            reminders: dict[int, int] = {}
            news: dict[int, int] = {}
            for user_id in due | overdue | recipients:
                for message in standin.chat(user_id):
                    into = news if NEWS in message.plain else reminders
                    into[user_id] = into.get(user_id, 0) + 1
            return reminders, news

        def sent() -> int:
            return len(standin.calls_to("sendMessage"))

        # A slow Telegram, so that the kill lands while sends are in flight.
        standin.delay("sendMessage", 0.01)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            MILIABOT_GLOBAL_RATE="10000",
            MILIABOT_CLAIM_LEASE_SECONDS="2",
        )
        bots = [await _start_bot(env, tmp_path) for _ in range(processes)]
        try:
            await until(lambda: sent() >= kill_at, timeout=300, every=0.02)
            victim = bots.pop(rng.randrange(len(bots)))
            victim.kill()  # SIGKILL: no clean-up, claims left behind
            await victim.wait()
            assert victim.returncode == -signal.SIGKILL
            before = sent()
            bots.append(await _start_bot(env, tmp_path))

            def finished() -> bool:
                reminders, news = counts()
                return set(reminders) >= due and set(news) >= recipients

            await until(finished, timeout=1200)
            await standin.settle(quiet=0.5)
        finally:
            for bot in bots:
                bot.send_signal(signal.SIGTERM)
            for bot in bots:
                _, stderr = await asyncio.wait_for(bot.communicate(), timeout=60)
                assert bot.returncode == 0, stderr.decode()[-3000:]

    reminders, news = counts()
    engine = make_engine(url)
    with engine.connect() as conn:
        occurrences: dict[str, int] = dict(
            conn.execute(
                select(OCCURRENCES.c.status, func.count()).group_by(OCCURRENCES.c.status)
            ).all()
        )
        deliveries: dict[str, int] = dict(
            conn.execute(
                select(DELIVERIES.c.status, func.count())
                .where(DELIVERIES.c.broadcast_id == broadcast_id)
                .group_by(DELIVERIES.c.status)
            ).all()
        )
    engine.dispose()
    # Lost: due and neither delivered nor recorded; recipients never reached.
    lost = (
        len(due - set(reminders))
        + len(recipients - set(news))
        + sum(n for status, n in occurrences.items() if status not in ("sent", "missed"))
        + sum(n for status, n in deliveries.items() if status != "sent")
    )
    duplicates = sum(reminders.values()) - len(reminders) + sum(news.values()) - len(news)
    wrongly_sent = len(overdue & set(reminders))
    record(
        f"crash ({processes} process{'es' if processes > 1 else ''})",
        trials=1,
        delivered=len(reminders) + len(news),
        missed=occurrences.get("missed", 0),
        sent_before_kill=before,
        lost=lost,
        duplicates=duplicates,
    )
    assert lost == 0, (occurrences, deliveries)
    assert wrongly_sent == 0, "overdue beyond grace: recorded missed, never sent"
    assert occurrences.get("missed", 0) == len(overdue)
    assert occurrences.get("sent", 0) == len(due)
    policy = DispatchPolicy()
    # The README's bound, per engine (reminders, broadcast) of the killed process.
    assert duplicates <= 2 * (policy.concurrency + policy.flush_every)


@pytest.mark.parametrize("trial", range(TRIALS))
async def test_one_process_on_sqlite_killed_and_restarted(tmp_path: Path, trial: int) -> None:
    await _trial(f"sqlite:///{tmp_path / 'bot.sqlite3'}", tmp_path, 1, seed=trial)


@pytest.mark.postgres
@pytest.mark.parametrize("trial", range(TRIALS))
async def test_one_of_three_processes_on_postgres_killed(
    tmp_path: Path, trial: int, postgres_url: str
) -> None:
    await _trial(postgres_url, tmp_path, 3, seed=1000 + trial)
