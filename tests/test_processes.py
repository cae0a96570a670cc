"""The program as people start it: `miliabot run` against a Bot API server, and the console."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from miliabot_tg.standin import DEFAULT_TOKEN, StandIn

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    return {**clean, **extra}


async def test_run_serves_start_guide_buttons_and_search_over_http(tmp_path: Path) -> None:
    async with StandIn(chat_rate=None) as standin:
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
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
            assert [name for name, _ in standin.commands][:2] == ["guide", "help"]

            standin.send_message("/start")
            await standin.wait_for(lambda: standin.last(1001), timeout=10)
            standin.send_message("/guide")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 2, timeout=10)
            standin.press(1001, "Milia in babies")
            await standin.wait_for(lambda: standin.chat(1001)[1].edits == 1, timeout=10)
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
        input="/start\n/guide\n1\n42\nhello?\n",
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
    assert "[1] What milia are   [2] What milia are not" in out
    assert "you> 1\nbot (edited)> What milia are\n" in out
    assert "[4] « All topics" in out
    assert "you> 42\n  (pick a button from 1 to 4)" in out
    assert "you> hello?\nbot> I couldn't find anything about “hello?”" in out
    assert "\033[" not in out, "no terminal colours when output is not a terminal"
    assert (tmp_path / "data" / "console.sqlite3").is_file()
