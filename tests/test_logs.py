"""The logs of a whole `miliabot run` session: readable or JSON lines, never the token."""

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import pytest

from miliabot_tg.logs import REDACTED, JsonFormatter, current_update
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from tests.test_processes import _env

ADMIN = 4242


async def _session(tmp_path: Path, log_format: str) -> tuple[str, int | None]:
    """Run the bot through errors and requests; return everything it logged."""
    async with StandIn(chat_rate=None) as standin:
        env = _env(
            MILIABOT_TOKEN=DEFAULT_TOKEN,
            MILIABOT_API_URL=standin.api_root,
            MILIABOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            MILIABOT_ADMIN_IDS=str(ADMIN),
            MILIABOT_LOG_FORMAT=log_format,
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
            await standin.wait_for(lambda: standin.calls_to("getUpdates"), timeout=90)
            # Telegram fails a poll with a 500.
            standin.fail_next("getUpdates", status=500)
            standin.send_message("/start")
            await standin.wait_for(lambda: standin.chat(1001), timeout=30)
            # A handler fails: its reply gets a 500, then an error that quotes the token.
            standin.fail_next("sendMessage", status=500)
            standin.send_message("/help")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 2, timeout=30)
            await standin.wait_for(lambda: standin.chat(ADMIN), timeout=10)  # told once
            standin.fail_next(
                "sendMessage", status=400, description=f"Bad Request: odd bot {DEFAULT_TOKEN}"
            )
            standin.send_message("/guide")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 3, timeout=30)
            standin.send_message("sunscreen")
            await standin.wait_for(lambda: len(standin.chat(1001)) == 4, timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return (stdout + stderr).decode(), process.returncode


def _assert_no_token(log: str) -> None:
    # In any case: PTB lowercases error descriptions after their first letter.
    assert DEFAULT_TOKEN.lower() not in log.lower()
    assert DEFAULT_TOKEN.split(":")[1].lower() not in log.lower()
    assert REDACTED in log, "the token came up and was replaced"


async def test_readable_logs_of_a_session_with_errors_never_show_the_token(
    tmp_path: Path,
) -> None:
    log, code = await _session(tmp_path, "text")
    assert code == 0, log
    _assert_no_token(log)
    assert "fetching updates failed" in log
    assert "while handling an update" in log
    assert "Traceback" in log  # the failing handler's, for the operator
    assert not any(line.startswith("{") for line in log.splitlines())


async def test_json_logs_are_one_object_a_line_naming_the_update_never_the_token(
    tmp_path: Path,
) -> None:
    log, code = await _session(tmp_path, "json")
    assert code == 0, log
    _assert_no_token(log)
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    for entry in entries:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys()
        assert entry["timestamp"].endswith("+00:00")
    messages = [e["message"] for e in entries]
    assert any(m.startswith("fetching updates failed") for m in messages)
    errors = [e for e in entries if "while handling an update" in e["message"]]
    assert len(errors) == 2
    for error in errors:
        assert isinstance(error["update_id"], int)
        assert error["level"] == "ERROR"
        assert "Traceback" in error["exception"]
    # Lines outside any update name none.
    assert not any("update_id" in e for e in entries if e["message"] == "stopping")


@pytest.mark.parametrize("secret", ["123:ABC", 'we"ird\\token'])
def test_json_formatter_blanks_a_secret_however_json_escapes_it(secret: str) -> None:
    formatter = JsonFormatter([secret])
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "url %s %s", (secret, secret.upper()), None
    )
    record.occurrence_id = 7
    line = formatter.format(record)
    entry = json.loads(line)
    assert entry["message"] == f"url {REDACTED} {REDACTED}"
    assert entry["occurrence_id"] == 7
    assert current_update.get() is None
