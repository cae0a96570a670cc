"""`miliabot run` as Docker runs it: starting against Telegram, and stopping on SIGTERM.

Each test starts the real command in a process of its own against the Bot API stand-in on
loopback, as tests/test_processes.py does.
"""

import asyncio
import logging
import random
import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from telegram.error import InvalidToken, NetworkError, RetryAfter, TimedOut

from miliabot_tg import broadcasts as store
from miliabot_tg import repo
from miliabot_tg.broadcasts import DELIVERIES
from miliabot_tg.cli import EXIT_CONFIG
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import HEARTBEATS, OCCURRENCES
from miliabot_tg.lifecycle import Backoff, _until_telegram_answers
from miliabot_tg.models import DeliveryStatus, OccurrenceStatus, utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.stalling_proxy import stalling_proxy
from tests.test_processes import _env, _start_bot

NOT_ANSWERING = "Telegram is not answering"


class Output:
    """A bot process's stderr, read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        assert process.stderr is not None
        self._reader = asyncio.create_task(self._read(process.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, check: Callable[[list[str]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.lines):
            assert time.monotonic() < deadline, "\n".join(self.lines[-30:])
            assert self.process.returncode is None, "\n".join(self.lines[-30:])
            await asyncio.sleep(0.05)

    async def finish(self, timeout: float = 30) -> int:
        """Wait for the process to end; return its exit status."""
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self._reader
        return code

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


async def test_a_rejected_token_ends_in_one_line_and_exit_78(tmp_path: Path) -> None:
    async with StandIn() as standin:
        env = _env(
            MILIABOT_TOKEN="123456:not-the-token-the-server-knows",
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        )
        process = await _start_bot(env, tmp_path)
        output = Output(process)
        code = await output.finish()
        assert standin.calls_to("getMe"), "it asked Telegram"
        assert len(standin.calls_to("getMe")) == 1, "a rejected token is not retried"
    assert code == EXIT_CONFIG == 78
    assert "Traceback" not in output.text
    said = "miliabot: Telegram rejected MILIABOT_TOKEN; copy it again from @BotFather."
    # Start-up logs (migrations, "starting"), then the one line that says what is wrong.
    assert output.lines[-1] == said, output.text
    assert [line for line in output.lines if " ERROR " in line or "CRITICAL" in line] == []
    assert "not-the-token" not in output.text


async def test_an_unreachable_then_failing_telegram_is_waited_for_then_served(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = _env(
        MILIABOT_TOKEN=DEFAULT_TOKEN,
        MILIABOT_API_URL=f"http://127.0.0.1:{port}",
        MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    )
    process = await _start_bot(env, tmp_path)
    output = Output(process)
    standin = StandIn(chat_rate=None)
    try:
        # Nothing listens on the port yet: connection refused, one line per attempt.
        await output.wait_for(lambda lines: _count(lines, NOT_ANSWERING) >= 2, timeout=30)
        # Then Telegram is there but failing: a 502 and a 500 before it answers.
        standin.fail_next("getMe", status=502)
        standin.fail_next("getMe", status=500)
        await standin.start(port=port)
        await standin.wait_for(lambda: standin.calls_to("getUpdates"), timeout=60)
        # Running, a failing getUpdates (the one after /start) is one line too, and polling
        # carries on.
        standin.fail_next("getUpdates", status=502)
        standin.send_message("/start")
        await standin.wait_for(lambda: standin.last(1001), timeout=10)
        reply = standin.last(1001)
        assert reply is not None and "MiliaBot" in reply.plain
        await output.wait_for(lambda lines: _count(lines, "fetching updates failed") == 1, 30)
        standin.send_message("/help")
        await standin.wait_for(lambda: len(standin.chat(1001)) == 2, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await output.finish()
        await standin.stop()
    assert code == 0, output.text
    assert "Traceback" not in output.text
    attempts = [line for line in output.lines if NOT_ANSWERING in line]
    assert len(attempts) >= 4, output.text
    assert any("ConnectError" in line for line in attempts), attempts
    assert any("Bad Gateway" in line for line in attempts), attempts
    assert any("Internal Server Error" in line for line in attempts), attempts
    assert len(standin.calls_to("getMe")) == 3, "getMe until it answered, once"
    assert len(standin.calls_to("setMyCommands")) == 1, "post_init ran once"
    assert _count(output.lines, "Telegram answered after") == 1
    assert DEFAULT_TOKEN.split(":")[1] not in output.text


async def test_sigterm_while_waiting_for_telegram_exits_at_once(tmp_path: Path) -> None:
    env = _env(
        MILIABOT_TOKEN=DEFAULT_TOKEN,
        MILIABOT_API_URL=f"http://127.0.0.1:{_free_port()}",
        MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
    )
    output = Output(await _start_bot(env, tmp_path))
    await output.wait_for(lambda lines: _count(lines, NOT_ANSWERING) >= 1, timeout=30)
    output.process.send_signal(signal.SIGTERM)
    assert await output.finish(timeout=10) == 0, output.text
    assert "Traceback" not in output.text


USERS = range(30_000, 30_300)


def _seed_due_reminders(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    start = utcnow()
    with new_session(engine) as session:
        for user_id in USERS:
            repo.touch_user(
                session=session, user_id=user_id, first_name="U", language_code="en", now=start
            )
            spec = parse_remind("sunscreen 08:30 daily", today=start.date())
            reminder = repo.add_reminder(
                session=session, user_id=user_id, spec=spec, now=start, default_key="UTC"
            )
            reminder.next_due_at = start - timedelta(minutes=1)  # all due right now
            session.add(reminder)
        session.commit()
    engine.dispose()


async def test_sigterm_mid_dispatch_stops_within_10_s_and_gives_back_every_claim(
    tmp_path: Path, database_url: str
) -> None:
    _seed_due_reminders(database_url)
    async with StandIn(global_rate=None, chat_rate=None) as standin:
        # A slow Telegram and a slow pace: one cycle claims all 300, which would take
        # 15 s to go out one by one; sends are on the wire when the signal lands.
        standin.delay("sendMessage", 0.1)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=database_url,
            MILIABOT_GLOBAL_RATE="20",
        )

        def delivered() -> set[int]:
            return {u for u in USERS if standin.chat(u)}

        output = Output(await _start_bot(env, tmp_path))
        await standin.wait_for(lambda: len(delivered()) >= 30, timeout=60)
        signalled = time.monotonic()
        output.process.send_signal(signal.SIGTERM)
        code = await output.finish()
        took = time.monotonic() - signalled
        await standin.settle(quiet=0.3)
        received = delivered()

    assert code == 0, output.text
    assert took < 10, f"stopping took {took:.1f} s, past Docker's grace period"
    assert "Traceback" not in output.text, output.text
    assert "exiting anyway" not in output.text, "stopped in order, not by the hard bound"
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(OCCURRENCES.c.user_id, OCCURRENCES.c.status, OCCURRENCES.c.claimed_by)
        ).all()
        alive = conn.execute(select(HEARTBEATS.c.instance)).all()
    engine.dispose()
    assert alive == [], "post_shutdown ran: the process left the shared database"
    assert len(rows) == len(USERS)
    assert [r for r in rows if r.claimed_by is not None] == [], "nothing is left claimed"
    statuses = {r.status for r in rows}
    assert statuses <= {OccurrenceStatus.SENT.value, OccurrenceStatus.PENDING.value}
    sent = {r.user_id for r in rows if r.status == OccurrenceStatus.SENT.value}
    assert sent == received, "every message Telegram took is recorded sent, and no other"
    assert 30 <= len(sent) < len(USERS), "the signal landed in the middle of the dispatch"
    duplicates = [u for u in USERS if len(standin.chat(u)) > 1]
    assert duplicates == []


@pytest.mark.postgres
async def test_a_stop_stuck_on_the_database_still_exits_within_10_s(
    tmp_path: Path, postgres_url: str
) -> None:
    """Past the hard bound the process leaves anyway; its claims then run out by lease."""
    _seed_due_reminders(postgres_url)
    with stalling_proxy(postgres_url) as proxy:
        async with StandIn(global_rate=None, chat_rate=None) as standin:
            standin.delay("sendMessage", 0.1)
            env = _env(
                MILIABOT_TOKEN=DEFAULT_TOKEN,
                MILIABOT_API_URL=standin.api_root,
                MILIABOT_DATABASE_URL=proxy.url(postgres_url),
                MILIABOT_GLOBAL_RATE="20",
            )
            output = Output(await _start_bot(env, tmp_path))
            await standin.wait_for(lambda: any(standin.chat(u) for u in USERS), timeout=60)
            # The database stops answering: outcomes cannot be recorded, nor claims released.
            proxy.stall(at_most=30)
            signalled = time.monotonic()
            output.process.send_signal(signal.SIGTERM)
            code = await output.finish()
            took = time.monotonic() - signalled
    assert code == 0, output.text
    assert took < 10, f"stopping took {took:.1f} s, past Docker's grace period"
    assert _count(output.lines, "exiting anyway") == 1, output.text
    assert "Traceback" not in output.text


async def test_sigterm_mid_broadcast_records_what_went_out_and_gives_back_the_rest(
    tmp_path: Path, database_url: str
) -> None:
    broadcast_id = _seed_broadcast(database_url)
    async with StandIn(global_rate=None, chat_rate=None) as standin:
        standin.delay("sendMessage", 0.1)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=database_url,
            MILIABOT_GLOBAL_RATE="20",
        )

        def delivered() -> set[int]:
            return {u for u in USERS if standin.chat(u)}

        output = Output(await _start_bot(env, tmp_path))
        await standin.wait_for(lambda: len(delivered()) >= 30, timeout=60)
        signalled = time.monotonic()
        output.process.send_signal(signal.SIGTERM)
        code = await output.finish()
        took = time.monotonic() - signalled
        await standin.settle(quiet=0.3)
        received = delivered()

    assert code == 0, output.text
    assert took < 10, f"stopping took {took:.1f} s, past Docker's grace period"
    assert "Traceback" not in output.text
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERIES.c.user_id, DELIVERIES.c.status, DELIVERIES.c.claimed_by).where(
                DELIVERIES.c.broadcast_id == broadcast_id
            )
        ).all()
    engine.dispose()
    assert len(rows) == len(USERS)
    assert [r for r in rows if r.claimed_by is not None] == [], "nothing is left claimed"
    assert {r.status for r in rows} <= {DeliveryStatus.SENT.value, DeliveryStatus.PENDING.value}
    sent = {r.user_id for r in rows if r.status == DeliveryStatus.SENT.value}
    assert sent == received, "every message Telegram took is recorded sent, and no other"
    assert 30 <= len(sent) < len(USERS), "the signal landed in the middle of the broadcast"


def _seed_broadcast(url: str) -> int:
    engine = make_engine(url)
    migrate(engine)
    now = utcnow()
    with new_session(engine) as session:
        for user_id in USERS:
            repo.touch_user(
                session=session, user_id=user_id, first_name="U", language_code="en", now=now
            )
    with engine.begin() as conn:
        broadcast_id = store.create_draft(conn, created_by=0, now=now, text="News")
    store.start(engine, broadcast_id, now, "UTC")
    engine.dispose()
    return broadcast_id


# --- the waiting, in process -----------------------------------------------------------------


def test_backoff_doubles_from_1_s_to_60_s_with_jitter() -> None:
    backoff = Backoff()
    rng = random.Random(7)
    for attempt, step in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (50, 60)]:
        waits = [backoff.delay(attempt, rng) for _ in range(200)]
        assert step / 2 <= min(waits) and max(waits) <= step
        assert max(waits) - min(waits) > step / 4, "jittered, not fixed"


async def test_waiting_for_telegram_logs_one_line_per_attempt_and_stops_on_a_rejected_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[Exception] = [
        NetworkError("httpx.ConnectError: All connection attempts failed"),
        TimedOut(),
        NetworkError("Bad Gateway"),
        RetryAfter(0),
    ]

    async def attempt() -> None:
        if failures:
            raise failures.pop(0)

    fast = Backoff(first=0.001, cap=0.004)
    with caplog.at_level(logging.INFO, logger="miliabot"):
        assert await _until_telegram_answers(attempt, asyncio.Event(), fast) is True
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if NOT_ANSWERING in line]) == 4
    assert "attempt 3: NetworkError: Bad Gateway" in lines[2]
    assert lines[-1] == "Telegram answered after 4 failed attempt(s)"
    assert all(r.exc_info is None for r in caplog.records), "no tracebacks"

    async def rejected() -> None:
        raise InvalidToken("Unauthorized")

    with pytest.raises(InvalidToken):
        await _until_telegram_answers(rejected, asyncio.Event(), fast)

    stop = asyncio.Event()

    async def unreachable() -> None:
        stop.set()  # a signal arrives while Telegram is away
        raise NetworkError("httpx.ConnectError")

    assert await _until_telegram_answers(unreachable, stop, Backoff(first=60)) is False
