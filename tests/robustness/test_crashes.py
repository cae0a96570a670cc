"""SIGKILL at random moments while due reminders and a broadcast go out; restart; count.

One run per configuration: due reminders are seeded (a tenth of them overdue beyond the
grace window, which the outage policy records as missed and never sends) with a running
broadcast, `miliabot run` starts (one process on SQLite, three on PostgreSQL), and then,
KILLS times, one process (a random one of the three) is killed with SIGKILL at a random
moment and a replacement started: each kill is a trial. The kill moments are random, one
in each of KILLS equal shares of the messages (and at least KILL_SPACING seconds after the
kill before), so that every kill lands mid-dispatch.

Lost: a due occurrence neither delivered nor recorded missed, or a recipient never reached.
Each duplicate is attributed to the kill between its two sends (the stand-in records when
every send arrived; the test knows when it killed): per kill, duplicates must stay within
the README's bound (the messages the killed process had on the wire plus its unrecorded
outcomes, for reminders and for the broadcast each), and a duplicate with no kill between
its sends would be a bug of its own.
"""

import asyncio
import functools
import itertools
import random
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from miliabot_tg import broadcasts as store
from miliabot_tg.broadcasts import DELIVERIES, PREFERENCES
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import OCCURRENCES, DispatchPolicy
from miliabot_tg.models import Reminder, User, utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.standin.records import Call
from tests.robustness.bots import ready, start_bot, wait_bot
from tests.robustness.results import record, size
from tests.test_processes import _env

REMINDERS = size(2_000, 20_000)
RECIPIENTS = size(1_000, 10_000)
# Kills per configuration (one process on SQLite, three on PostgreSQL), each a trial.
KILLS = size(5, 10)
NEWS = "Soak news 📣"
FIRST_USER = 50_000


def _seed(
    url: str, reminders: int = REMINDERS, recipients: int = RECIPIENTS
) -> tuple[int, set[int], set[int], set[int]]:
    """Users with one due reminder each; the first RECIPIENTS have announcements on.

    Rows as the bot writes them (the models, the broadcast store), in a few transactions:
    a commit per user, as `/start` and `/remind` do, took a minute at soak size.

    Returns the broadcast id, the users due within grace, those overdue beyond it, and the
    recipients.
    """
    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    users = range(FIRST_USER, FIRST_USER + max(reminders, recipients))
    overdue = {u for u in users[:reminders] if u % 10 == 0}
    spec = parse_remind("sunscreen 08:30 daily", today=now.date())
    with new_session(engine) as session:
        session.add_all(
            User(id=user_id, first_name="U", language_code="en", first_seen=now, last_seen=now)
            for user_id in users
        )
        session.flush()
        session.add_all(
            Reminder(
                user_id=user_id,
                kind=spec.kind,
                label=spec.label,
                rule=spec.rule.to_text(),
                created_at=now,
                updated_at=now,
                next_due_at=now
                - (timedelta(hours=3) if user_id in overdue else timedelta(minutes=1)),
            )
            for user_id in users[:reminders]
        )
        session.commit()
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as conn:
        off = [
            {"user_id": user_id, "announcements": False, "updated_at": now}
            for user_id in users[recipients:]
        ]
        if off:
            conn.execute(insert(PREFERENCES), off)
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


class Sends:
    """The successful sendMessage calls the stand-in answered, read incrementally (a full
    scan of tens of thousands of calls, four times a second, would starve the stand-in, which
    shares this event loop): for each (chat, is-broadcast) message, when each copy arrived."""

    def __init__(self, standin: StandIn) -> None:
        self._standin = standin
        self._cursor = 0
        self._pending: list[Call] = []
        self.arrivals: dict[tuple[int, bool], list[float]] = {}
        self.count = 0

    def update(self) -> int:
        """Take in the calls answered since the last look; return how many sends succeeded."""
        calls = self._standin.calls
        fresh = [c for c in calls[self._cursor :] if c.method == "sendMessage"]
        self._cursor = len(calls)
        waiting = []
        for call in [*self._pending, *fresh]:
            if call.status is None:
                waiting.append(call)
            elif call.ok:
                key = (int(call.params["chat_id"]), NEWS in str(call.params.get("text")))
                self.arrivals.setdefault(key, []).append(call.at)
                self.count += 1
        self._pending = waiting
        return self.count

    def reached(self, count: int) -> bool:
        return self.update() >= count

    def chats(self, news: bool) -> set[int]:
        return {chat for chat, is_news in self.arrivals if is_news == news}


def kill_points(rng: random.Random, total: int, kills: int) -> list[int]:
    """A random send count in each of `kills` equal shares of 5–90 % of the messages."""
    width = 0.85 / kills
    shares = [(0.05 + i * width, 0.05 + (i + 1) * width) for i in range(kills)]
    return [int(total * rng.uniform(low, high)) for low, high in shares]


# The stand-in stamps a call when its handler starts, in this event loop; a request the
# victim wrote just before it died can sit in the socket a little and be stamped after the
# kill. Nothing a live process sends that soon after a kill can be resent unless its own
# process is killed later, and then the later kill takes it.
ON_THE_WIRE = 1.0
# Seconds from one kill to the next at least: the claim lease (2 s) and a margin.
KILL_SPACING = 6.0


def attribute(
    arrivals: dict[tuple[int, bool], list[float]], kills: list[float], *, one_process: bool
) -> list[int]:
    """Duplicates per kill, and last the unattributed ones: each extra copy of a message is
    put on a kill between the copy before it and itself, the kill that orphaned the earlier
    send's claim. With one process that is the first kill after the earlier send (the only
    process alive then died there): exact. With three, when more than one kill lies between,
    the latest: kills are KILL_SPACING apart, and a resend comes once the orphaned claim's
    lease (2 s) has expired."""
    per_kill = [0] * (len(kills) + 1)
    for times in arrivals.values():
        for first, again in itertools.pairwise(sorted(times)):
            between = [i for i, at in enumerate(kills) if first < at + ON_THE_WIRE and at < again]
            if not between:
                per_kill[len(kills)] += 1
            else:
                per_kill[between[0] if one_process else between[-1]] += 1
    return per_kill


def ambiguous(arrivals: dict[tuple[int, bool], list[float]], kills: list[float]) -> int:
    """Duplicates with more than one kill between their sends."""
    return sum(
        len([at for at in kills if first < at + ON_THE_WIRE and at < again]) > 1
        for times in arrivals.values()
        for first, again in itertools.pairwise(sorted(times))
    )


def unattributed(
    arrivals: dict[tuple[int, bool], list[float]], kills: list[float]
) -> list[tuple[float, float]]:
    """For a failure message: each duplicate no kill explains, as its two sends' times
    after the kill before the first."""
    out = []
    for times in arrivals.values():
        for first, again in itertools.pairwise(sorted(times)):
            if not any(first < at + ON_THE_WIRE and at < again for at in kills):
                before = max((at for at in kills if at <= first), default=0.0)
                out.append((round(first - before, 3), round(again - before, 3)))
    return out


async def _run(url: str, tmp_path: Path, processes: int, seed: int) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    broadcast_id, due, overdue, recipients = _seed(url)
    total = len(due) + len(recipients)
    points = kill_points(rng, total, KILLS)
    label = f"{processes} process{'es' if processes > 1 else ''}"
    policy = DispatchPolicy()
    # The README's bound, per engine (reminders, broadcast) of the killed process.
    bound = 2 * (policy.concurrency + policy.flush_every)

    async with StandIn(global_rate=None, chat_rate=None) as standin:
        sends = Sends(standin)
        # A Telegram that takes a moment to answer, so that every kill leaves sends in flight.
        standin.delay("sendMessage", 0.01)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            # Pacing off in effect (the stand-in enforces no limits either): what is tested
            # is crash recovery, and at Telegram's real 30/s a run would take a quarter hour.
            MILIABOT_GLOBAL_RATE="100000",
            MILIABOT_CHAT_RATE="100000",
            MILIABOT_CLAIM_LEASE_SECONDS="2",
        )
        bots = [await start_bot(env, tmp_path) for _ in range(processes)]
        kills: list[float] = []
        sent_at_kill: list[int] = []
        try:
            for point in points:
                await until(functools.partial(sends.reached, point), timeout=300, every=0.02)
                if kills:
                    # Let the last victim's claims expire and be resent first, so that each
                    # duplicate has one kill between its sends.
                    await asyncio.sleep(max(0.0, kills[-1] + KILL_SPACING - time.monotonic()))
                victim = bots.pop(rng.randrange(len(bots)))
                victim.kill()  # SIGKILL: no clean-up, claims left behind
                kills.append(time.monotonic())  # the stand-in's clock, as in Call.at
                sent_at_kill.append(sends.count)
                await victim.wait()
                assert victim.returncode == -signal.SIGKILL
                bots.append(await start_bot(env, tmp_path))
                # Up before the next kill or the final SIGTERM (one while it still starts
                # would kill it outright).
                await ready(bots[-1])

            def finished() -> bool:
                sends.update()
                return sends.chats(news=False) >= due and sends.chats(news=True) >= recipients

            await until(finished, timeout=1200)
            await standin.settle(quiet=0.5, timeout=60)
            sends.update()
        finally:
            for bot in bots:
                bot.send_signal(signal.SIGTERM)
            for bot in bots:
                log = await wait_bot(bot)
                assert bot.returncode == 0, log[-3000:]
        # As the users see it: every message in every chat.
        reminders: dict[int, int] = {}
        news: dict[int, int] = {}
        for user_id in due | overdue | recipients:
            for message in standin.chat(user_id):
                into = news if NEWS in message.plain else reminders
                into[user_id] = into.get(user_id, 0) + 1

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
    per_kill = attribute(sends.arrivals, kills, one_process=processes == 1)
    for number, (at_kill, dups) in enumerate(zip(sent_at_kill, per_kill, strict=False), 1):
        record(
            f"crash ({label}) kill {number}/{KILLS}",
            trials=1,
            sent_before_kill=at_kill,
            duplicates=dups,
        )
    record(
        f"crash ({label}) run",
        delivered=len(reminders) + len(news),
        missed=occurrences.get("missed", 0),
        lost=lost,
        duplicates_total=duplicates,
        unattributed_duplicates=per_kill[-1],
        ambiguous_duplicates=ambiguous(sends.arrivals, kills),
        seconds=round(time.monotonic() - started),
    )
    assert lost == 0, (occurrences, deliveries)
    assert not overdue & set(reminders), "overdue beyond grace: recorded missed, never sent"
    assert occurrences.get("missed", 0) == len(overdue)
    assert occurrences.get("sent", 0) == len(due)
    # The stand-in's record of sends and the chats as users see them agree.
    assert sum(per_kill) == duplicates, (per_kill, duplicates)
    assert per_kill[-1] == 0, ("duplicates no kill explains", unattributed(sends.arrivals, kills))
    assert max(per_kill) <= bound, (per_kill, bound)


async def test_one_process_on_sqlite_killed_and_restarted_again_and_again(
    tmp_path: Path,
) -> None:
    await _run(f"sqlite:///{tmp_path / 'bot.sqlite3'}", tmp_path, 1, seed=1)


@pytest.mark.postgres
async def test_one_of_three_processes_on_postgres_killed_again_and_again(
    tmp_path: Path, postgres_url: str
) -> None:
    await _run(postgres_url, tmp_path, 3, seed=1000)
