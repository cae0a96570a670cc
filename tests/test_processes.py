"""The program as people start it: `miliabot run` against a Bot API server, and the console."""

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from miliabot_tg import repo
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.models import Occurrence, utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    # No HTTP server unless a test asks for one: bots side by side would want one port.
    return {**clean, "MILIABOT_LISTEN": "off", **extra}


async def _start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start `miliabot run` as its own process, as an operator would."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "miliabot_tg",
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_serves_start_guide_buttons_and_search_over_http(tmp_path: Path) -> None:
    async with StandIn(chat_rate=None) as standin:
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        )
        process = await _start_bot(env, tmp_path)
        try:
            await standin.wait_for(lambda: standin.calls_to("getUpdates"), timeout=30)
            assert [name for name, _ in standin.commands][:2] == ["guide", "help"]

            standin.send_message("/start")
            await standin.wait_for(lambda: standin.last(1001), timeout=10)
            standin.send_message("/guide")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 2, timeout=10)
            standin.press(1001, "👶 Babies")
            await standin.wait_for(lambda: standin.chat(1001)[1].edits == 1, timeout=10)
            standin.press(1001, "Milia in babies")
            await standin.wait_for(lambda: standin.chat(1001)[1].edits == 2, timeout=10)
            standin.send_message("sunscreen")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 3, timeout=10)
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        messages = standin.chat(1001)
        assert "MiliaBot" in messages[0].plain
        assert messages[1].plain.startswith("Milia in babies")
        assert messages[2].plain.startswith("🔎 Topics about “sunscreen”")
        assert process.returncode == 0, stderr.decode()
        log = (stdout + stderr).decode()
        assert "starting: 20 guide topics" in log or "starting:" in log
        assert DEFAULT_TOKEN not in log
        assert DEFAULT_TOKEN.split(":")[1] not in log


def test_console_transcript_from_a_pipe(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "miliabot_tg", "console"],
        input="/start\n/guide\n1\n1\n42\nhello?\n",
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "you> /start\nbot> Hi Friend! 👋 I'm MiliaBot." in out
    assert "[1] 🔍 Milia basics   [2] 🧬 Types" in out
    assert "you> 1\nbot (edited)> 🔍 Milia basics\n" in out
    assert "[1] What milia are\n" in out
    assert "you> 1\nbot (edited)> What milia are\n" in out
    assert "[4] « 🔍 Milia basics   [5] « All topics" in out
    assert "you> 42\n  (pick a button from 1 to 5)" in out
    assert "you> hello?\nbot> I couldn't find anything about “hello?”" in out
    assert "\033[" not in out, "no terminal colours when output is not a terminal"
    assert (tmp_path / "data" / "console.sqlite3").is_file()


async def test_reminders_survive_sigkill_mid_dispatch_and_arrive_at_least_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    users = range(10_000, 10_300)
    start = utcnow()
    with new_session(engine) as session:
        for user_id in users:
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

    def delivered() -> dict[int, int]:
        return {u: len(standin.chat(u)) for u in users if standin.chat(u)}

    async with StandIn(global_rate=None, chat_rate=None) as standin:
        # A slow Telegram, so that the kill lands while sends are in flight.
        standin.delay("sendMessage", 0.02)
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=url,
            MILIABOT_GLOBAL_RATE="10000",
            MILIABOT_CLAIM_LEASE_SECONDS="2",
        )

        first = await _start_bot(env, tmp_path)
        await standin.wait_for(lambda: len(delivered()) >= 60, timeout=60)
        first.kill()  # SIGKILL: no clean-up, claims left behind
        await first.wait()
        assert first.returncode == -signal.SIGKILL
        before = len(delivered())
        assert before < len(users), "the kill must land in the middle of the dispatch"

        second = await _start_bot(env, tmp_path)
        try:
            await standin.wait_for(lambda: len(delivered()) == len(users), timeout=60)
            await standin.settle(quiet=0.3)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(second.communicate(), timeout=30)
        assert second.returncode == 0, stderr.decode()

    counts = delivered()
    assert set(counts) == set(users), "every reminder arrived"
    duplicates = sum(counts.values()) - len(users)
    # At-least-once: only messages in flight, or sent but not yet recorded, may come twice.
    policy = DispatchPolicy()
    assert duplicates <= policy.concurrency + policy.flush_every
    with new_session(engine) as session:
        statuses = {o.status for o in session.exec(select(Occurrence))}
    assert statuses == {"sent"}
    print(f"delivered before the kill: {before}; duplicates after restart: {duplicates}")
