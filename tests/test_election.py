"""One poller per PostgreSQL database: the advisory-lock election, alone and in a process."""

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from miliabot_tg.db import make_engine, migrate, normalize_url
from miliabot_tg.election import PollerElection, Role
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.test_processes import _env

pytestmark = pytest.mark.postgres


class Elector:
    """An election whose polling is a flag, recording every start and stop."""

    def __init__(self, url: str, **timing: float) -> None:
        self.polling = False
        self.events: list[str] = []
        self.election = PollerElection(
            make_url(normalize_url(url)),
            start_polling=self._start,
            stop_polling=self._stop,
            retry_every=0.2,
            check_every=0.2,
            check_within=1.0,
            after_conflict=timing.get("after_conflict", 30.0),
        )

    async def _start(self) -> None:
        self.polling = True
        self.events.append("start")

    async def _stop(self) -> None:
        self.polling = False
        self.events.append("stop")


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def test_exactly_one_of_two_polls_and_the_other_takes_over_when_it_leaves(
    postgres_url: str,
) -> None:
    a, b = Elector(postgres_url), Elector(postgres_url)
    a.election.start()
    await _until(lambda: a.polling)
    b.election.start()
    await asyncio.sleep(1.0)  # five of b's attempts
    assert (a.polling, b.polling) == (True, False)
    assert b.election.role is Role.FOLLOWER

    await a.election.close()  # stops polling, then releases the lock
    assert a.events == ["start", "stop"]
    await _until(lambda: b.polling, timeout=3)
    await b.election.close()
    assert b.events == ["start", "stop"]


async def test_a_poller_that_loses_its_lock_connection_stops_polling_at_once(
    postgres_url: str,
) -> None:
    a, b = Elector(postgres_url), Elector(postgres_url)
    a.election.start()
    await _until(lambda: a.polling)
    b.election.start()
    await asyncio.sleep(0.5)
    assert not b.polling
    # The database ends the poller's session (as a failover or a network cut would).
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    await _until(lambda: not a.polling, timeout=3)
    await _until(lambda: b.polling, timeout=3)
    # The two never polled at the same moment: a stopped before b could take the lock.
    await asyncio.sleep(0.5)
    assert [a.polling, b.polling].count(True) == 1
    await a.election.close()
    await b.election.close()


async def test_a_conflict_makes_the_poller_give_way_and_wait(postgres_url: str) -> None:
    a = Elector(postgres_url, after_conflict=60.0)
    b = Elector(postgres_url)
    a.election.start()
    await _until(lambda: a.polling)
    b.election.start()
    a.election.conflict()  # Telegram's 409
    a.election.conflict()  # the same storm is one step down, not two
    await _until(lambda: b.polling, timeout=3)
    assert a.events == ["start", "stop"]
    await b.election.close()  # b leaves; a waits out its pause instead of polling again
    await asyncio.sleep(0.6)
    assert not a.polling
    await a.election.close()
    assert a.events == ["start", "stop"]


async def test_a_409_makes_a_running_bot_stop_polling_with_one_log_line(
    postgres_url: str, tmp_path: Path
) -> None:
    migrate(make_engine(postgres_url))
    async with StandIn(chat_rate=None) as standin:
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=postgres_url,
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "miliabot_tg",
            "run",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await standin.wait_for(lambda: standin.calls_to("getUpdates"), timeout=30)
            # Someone else polls with the same token: the bot's waiting poll gets a 409.
            async with httpx.AsyncClient() as client:
                url = f"{standin.api_root}/bot{DEFAULT_TOKEN}/getUpdates"
                foreign = asyncio.create_task(client.post(url, json={"timeout": 3}))
                await asyncio.sleep(0.5)
                polls = len(standin.calls_to("getUpdates"))
                await asyncio.sleep(2.0)
                # It stopped polling: no call of its own came after the 409 (one, at most,
                # in PTB's stop, which confirms the updates it read).
                assert len(standin.calls_to("getUpdates")) - polls <= 1
                await foreign
            standin.send_message("/help")
            await asyncio.sleep(1.0)
            assert standin.chat(1001) == [], "a follower does not fetch updates"
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    log = (stdout + stderr).decode()
    assert process.returncode == 0, log
    assert log.count("this process polls Telegram for updates") == 1
    assert log.count("409 Conflict") == 1, log
    assert "this process no longer polls" in log
    assert "Traceback" not in log
