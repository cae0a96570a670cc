"""`miliabot run` processes for the robustness tests, each logging to a file.

Not to a pipe: a test that reads the pipe only at the end lets it fill (64 KiB, a dozen
tracebacks of a database outage), and then the bot blocks in a logging call, its event
loop with it, until someone reads. A 60 s PostgreSQL outage did exactly that: the bot
seemed to hang for five minutes after the database came back.
"""

import asyncio
import itertools
import signal
import sys
import time
from pathlib import Path

_numbers = itertools.count(1)
_logs: dict[int, Path] = {}


async def start_bot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start `miliabot run` as its own process, as an operator would; output to a file."""
    log = cwd / f"bot-{next(_numbers)}.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "miliabot_tg",
            "run",
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    _logs[process.pid] = log
    return process


async def ready(process: asyncio.subprocess.Process, timeout: float = 120) -> None:
    """Wait until the process says it runs (its SIGTERM handler is in place from then on: a
    SIGTERM before that kills it outright, as it would any program still starting)."""
    deadline = time.monotonic() + timeout
    while "running; SIGTERM or Ctrl-C stops" not in log_of(process):
        assert process.returncode is None, log_of(process)[-3000:]
        assert time.monotonic() < deadline, f"not running within {timeout} s"
        await asyncio.sleep(0.1)


def log_of(process: asyncio.subprocess.Process) -> str:
    """Everything the process has written so far."""
    return _logs[process.pid].read_text(errors="replace")


async def stop_bot(process: asyncio.subprocess.Process, timeout: float = 60) -> str:
    """SIGTERM, wait for the exit; return the process's log."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await wait_bot(process, timeout)


async def wait_bot(process: asyncio.subprocess.Process, timeout: float = 60) -> str:
    """Wait for a process already told to stop (a second SIGTERM means "exit at once", with
    a failure status); return its log."""
    await asyncio.wait_for(process.wait(), timeout=timeout)
    return log_of(process)
