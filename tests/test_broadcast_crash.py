"""Broadcasts survive SIGKILL: one process restarted, or one of three on PostgreSQL killed."""

import asyncio
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from miliabot_tg import broadcasts as store
from miliabot_tg import repo
from miliabot_tg.broadcasts import DELIVERIES
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.models import utcnow
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.test_processes import _env, _start_bot

RECIPIENTS = range(20_000, 20_300)


def _seed(url: str) -> int:
    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    with new_session(engine) as session:
        for user_id in RECIPIENTS:
            repo.touch_user(
                session=session, user_id=user_id, first_name="U", language_code="en", now=now
            )
    with engine.begin() as conn:
        broadcast_id = store.create_draft(conn, created_by=0, now=now, text="News")
    store.start(engine, broadcast_id, now, "UTC")
    engine.dispose()
    return broadcast_id


@pytest.mark.parametrize("processes", [1, 3])
async def test_a_broadcast_survives_sigkill_and_reaches_everyone(
    tmp_path: Path, processes: int, request: pytest.FixtureRequest
) -> None:
    # Several processes share the work only on PostgreSQL; one runs on SQLite.
    url = (
        request.getfixturevalue("postgres_url")
        if processes > 1
        else f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    )
    broadcast_id = _seed(url)

    async with StandIn(global_rate=None, chat_rate=None) as standin:

        def delivered() -> dict[int, int]:
            return {u: len(standin.chat(u)) for u in RECIPIENTS if standin.chat(u)}

        # A slow Telegram, so that the kill lands while sends are in flight.
        standin.delay("sendMessage", 0.02)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            MILIABOT_GLOBAL_RATE="10000",
            MILIABOT_CLAIM_LEASE_SECONDS="2",
        )
        bots = [await _start_bot(env, tmp_path) for _ in range(processes)]
        await standin.wait_for(lambda: len(delivered()) >= 60, timeout=60)
        victim = bots.pop(0)
        victim.kill()  # SIGKILL: no clean-up, claims left behind
        await victim.wait()
        assert victim.returncode == -signal.SIGKILL
        before = len(delivered())
        assert before < len(RECIPIENTS), "the kill must land in the middle of the broadcast"
        if not bots:
            bots.append(await _start_bot(env, tmp_path))
        try:
            await standin.wait_for(lambda: len(delivered()) == len(RECIPIENTS), timeout=90)
            await standin.settle(quiet=0.3)
        finally:
            for bot in bots:
                bot.send_signal(signal.SIGTERM)
            for bot in bots:
                _, stderr = await asyncio.wait_for(bot.communicate(), timeout=30)
                assert bot.returncode == 0, stderr.decode()

    counts = delivered()
    assert set(counts) == set(RECIPIENTS), "everyone got it"
    duplicates = sum(counts.values()) - len(RECIPIENTS)
    # Only what the killed process had on the wire, or sent but not yet recorded.
    policy = DispatchPolicy()
    assert duplicates <= policy.concurrency + policy.flush_every
    engine = make_engine(url)
    with engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(
                select(DELIVERIES.c.status, func.count())
                .where(DELIVERIES.c.broadcast_id == broadcast_id)
                .group_by(DELIVERIES.c.status)
            ).all()
        )
        done = store.get(conn, broadcast_id)
    engine.dispose()
    assert statuses == {"sent": len(RECIPIENTS)}
    assert done is not None
    assert done.status == "done"
    print(f"{processes} process(es): {before} delivered before the kill, {duplicates} twice")
