"""An hour of intermittent 5xx, compressed: the real bot on a fake clock that jumps 5 s a cycle.

The real Application sends over HTTP to the stand-in; only time is fake. The dispatcher
reads the bot's clock for everything it decides (when a reminder is due, when a failed send
is tried again, when a claim expires), so running its cycle by hand every 5 simulated
seconds replays an hour in well under a minute of wall time, and every request can be
stamped with the simulated moment it was made.

Reminders fall due at random moments through the hour. Telegram alternates three minutes in
which every send gets a 500, 502 or 503 with three minutes in which a fifth of them do; then
it recovers and the test runs on for a quarter hour. Afterwards: every reminder (all inside
their two-hour grace window) delivered exactly once and recorded sent, none missed; each
message's retries back off as the policy says (5 s, 10 s, 20 s, ... up to 5 minutes); and no
request storm: once Telegram is well, each message still undelivered is sent once, and the
requests of the whole run are the deliveries plus the 5xx answers, each of which is a retry
the back-off allowed.
"""

import itertools
import math
import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from miliabot_tg import repo
from miliabot_tg.db import new_session
from miliabot_tg.dispatch import OCCURRENCES, REMINDERS, retry_delay
from miliabot_tg.models import Reminder, User
from miliabot_tg.schedule import parse_remind
from tests.harness import Harness, running_bot
from tests.robustness.results import record, size, soak

REMINDERS_DUE = size(300, 2_000)
HOUR = timedelta(hours=1)
AFTER = timedelta(minutes=15)
STEP = timedelta(seconds=5)
FIRST_USER = 70_000
STATUSES = (500, 502, 503)


def _seed(bot: Harness, rng: random.Random) -> dict[int, float]:
    """One reminder per user, due at a random second of the hour; returns user -> due second."""
    start = bot.clock()
    spec = parse_remind("sunscreen 08:30 daily", today=start.date())
    due = {FIRST_USER + i: rng.uniform(0, HOUR.total_seconds()) for i in range(REMINDERS_DUE)}
    with new_session(bot.engine) as session:
        session.add_all(
            User(id=u, first_name="U", language_code="en", first_seen=start, last_seen=start)
            for u in due
        )
        session.flush()
        session.add_all(
            Reminder(
                user_id=u,
                kind=spec.kind,
                label=spec.label,
                rule=spec.rule.to_text(),
                created_at=start,
                updated_at=start,
                next_due_at=start + timedelta(seconds=at),
            )
            for u, at in due.items()
        )
        session.commit()
    return due


def _waiting(bot: Harness) -> int:
    """Sends the next cycle can make: reminders due and occurrences waiting to be (re)tried."""
    now = bot.clock()
    with bot.engine.connect() as conn:
        reminders = conn.execute(
            select(func.count()).where(REMINDERS.c.next_due_at <= now)
        ).scalar_one()
        retries = conn.execute(
            select(func.count()).where(
                OCCURRENCES.c.status.in_(repo.CLAIMABLE), OCCURRENCES.c.due_at <= now
            )
        ).scalar_one()
    return int(reminders) + int(retries)


# SQLite in CI (the run is mostly its 900 cycles, half a minute); PostgreSQL too under
# `make soak`.
DATABASES = ["sqlite", *([pytest.param("postgres", marks=pytest.mark.postgres)] if soak() else [])]


@pytest.mark.parametrize("database", DATABASES)
async def test_an_hour_of_intermittent_5xx_delivers_everything_with_backoff_and_no_storm(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(11)
    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    async with running_bot(tmp_path, database_url=url) as bot:
        due = _seed(bot, rng)
        start = bot.clock()
        # (simulated seconds since start, chat, status) of every send, in order.
        sends: list[tuple[float, int, int]] = []
        injected = 0
        seen = 0
        undelivered_at_recovery = leftover_at_recovery = -1
        while bot.clock() - start < HOUR + AFTER:
            elapsed = bot.clock() - start
            minute = int(elapsed.total_seconds() // 60)
            failed_so_far = sum(1 for _, _, status in sends if status != 200)
            leftover = injected - failed_so_far  # injected faults not yet used up
            if elapsed < HOUR:
                waiting = _waiting(bot)
                # Every send fails for three minutes, then a fifth of them for three.
                want = waiting if (minute // 3) % 2 == 0 else math.ceil(waiting / 5)
                if want > leftover:
                    status = STATUSES[minute % len(STATUSES)]
                    bot.standin.fail_next("sendMessage", status=status, count=want - leftover)
                    injected += want - leftover
            elif undelivered_at_recovery < 0:
                # Telegram recovers, but faults injected and not used up yet (a cycle sent
                # fewer than were waiting) still fail the first sends after the hour.
                reached = {chat for _, chat, status in sends if status == 200}
                undelivered_at_recovery = len(set(due) - reached)
                leftover_at_recovery = leftover
            await bot.dispatcher.run_cycle()
            at = elapsed.total_seconds()
            for call in bot.standin.calls[seen:]:
                if call.method == "sendMessage":
                    assert call.status is not None
                    sends.append((at, int(call.params["chat_id"]), call.status))
            seen = len(bot.standin.calls)
            bot.clock.advance(STEP)

        with bot.engine.connect() as conn:
            outcomes: dict[str, int] = dict(
                conn.execute(
                    select(OCCURRENCES.c.status, func.count()).group_by(OCCURRENCES.c.status)
                ).all()
            )

    per_chat: dict[int, list[tuple[float, int]]] = {}
    for at, chat, status in sends:
        per_chat.setdefault(chat, []).append((at, status))
    delivered = {chat: sum(s == 200 for _, s in tries) for chat, tries in per_chat.items()}
    lost = sum(1 for user in due if delivered.get(user, 0) == 0)
    duplicates = sum(n - 1 for n in delivered.values() if n > 1)
    # Back-off: the k-th retry of a message comes retry_delay(k) after the attempt before it.
    too_soon = []
    longest = 0.0
    for chat, tries in per_chat.items():
        for k, ((before, _), (after, _)) in enumerate(itertools.pairwise(tries), 1):
            gap = after - before
            longest = max(longest, gap)
            if gap < retry_delay(k).total_seconds():
                too_soon.append((chat, k, gap))
    failures = sum(1 for _, _, status in sends if status != 200)
    after_hour = [(at, s) for at, _, s in sends if at >= HOUR.total_seconds()]
    record(
        f"an hour of intermittent 5xx, simulated ({'PostgreSQL' if url else 'SQLite'})",
        reminders=len(due),
        delivered=sum(delivered.values()),
        lost=lost,
        duplicates=duplicates,
        requests=len(sends),
        answered_5xx=failures,
        most_tries_for_one_message=max(len(t) for t in per_chat.values()),
        longest_backoff_s=int(longest),
        requests_after_the_hour=len(after_hour),
        undelivered_at_the_hour=undelivered_at_recovery,
    )
    assert lost == 0 and duplicates == 0
    assert outcomes == {"sent": len(due)}, outcomes
    assert failures > len(due) / 2, "the hour was really faulty"
    assert too_soon == [], too_soon[:10]
    # No storm: each request is a delivery or an answered 5xx (no request lost or doubled),
    # and after the hour each message still undelivered takes one request, plus one for
    # each fault left over from the hour.
    assert len(sends) == len(due) + failures
    failed_after = sum(1 for _, s in after_hour if s != 200)
    assert failed_after <= leftover_at_recovery
    assert len(after_hour) == undelivered_at_recovery + failed_after
