"""Webhook mode: 100 updates a second from 1,000 users, posted to a real `miliabot run`.

The bot runs as an operator runs it (`miliabot run`, webhook mode, SQLite, its own
process); the Bot API stand-in runs in this process and posts each update to the bot's
webhook with the secret, as Telegram does. Each user in turn (the same shuffled order
every round, so a user's updates are 10 s apart, as a person's are) sends `/guide`, then
presses the first button of the menu it got, then types a search; a third of each.

The baseline runs first, in the same run, under the same load: bare python-telegram-bot
sending the same replies (bench/webhook_baseline.py), without what miliabot adds per
update (a database, pacing, per-chat lanes, metrics). It shows the floor of PTB, httpx and
the machine the figures come from.

Measured for every update: from the moment the stand-in POSTs it to the moment the bot's
reply (`sendMessage`; the press's `editMessageText`) reaches the stand-in. Telegram's
per-chat limit is kept (1 a second, and no user sends faster); its overall 30 a second is
not, since 100 answers a second need more (MILIABOT_GLOBAL_RATE=1000).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError, emit, machine, percentile, scratch_dir
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.standin.records import Call

FULL = (1000, 30.0)  # users, seconds
QUICK = (200, 3.0)  # a user's second update 2 s after the first: no 429 for the baseline
RATE = 100.0  # updates a second
URL = "https://bench.invalid/hook"
SECRET = "bench-secret-0123456789"  # noqa: S105 (a benchmark's own)
FIRST_USER = 500_000_000
SEARCHES = ("sunscreen", "baby milia", "how do I remove milia", "retinol", "exfoliate gently")
TARGET_P99_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "content"
ANSWERS_WITHIN_S = 60.0


@dataclass
class Sent:
    """One update the stand-in queued for the webhook."""

    update_id: int
    chat: int
    kind: str  # guide, press, search
    methods: tuple[str, ...]  # the reply's method


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Which program takes the updates: the bot as operators run it, or bare PTB (the baseline).
OURS = ("-m", "miliabot_tg", "run")
BARE = ("-m", "bench.webhook_baseline")


async def _start_bot(
    folder: Path, api_root: str, port: int, program: tuple[str, ...]
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    env |= {
        "MILIABOT_TOKEN": DEFAULT_TOKEN,
        "MILIABOT_API_URL": api_root,
        "MILIABOT_DATABASE_URL": f"sqlite:///{folder / 'bot.sqlite3'}",
        "MILIABOT_LISTEN": f"127.0.0.1:{port}",
        "MILIABOT_WEBHOOK_URL": URL,
        "MILIABOT_WEBHOOK_SECRET": SECRET,
        "MILIABOT_GLOBAL_RATE": "1000",
        "MILIABOT_CONTENT_DIR": str(CONTENT),
        "PYTHONPATH": str(ROOT),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *program,
        env=env,
        cwd=folder,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _until_taking_updates(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert process.stderr is not None
    while True:
        raw = await asyncio.wait_for(process.stderr.readline(), 120)
        if not raw:
            raise BenchError("the bot stopped before it took updates:\n" + "\n".join(lines))
        lines.append(raw.decode(errors="replace").rstrip())
        if "taking updates at the webhook" in lines[-1]:
            return


async def _drain(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert process.stderr is not None
    async for raw in process.stderr:
        lines.append(raw.decode(errors="replace").rstrip())


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _act(standin: StandIn, user: int, turn: int, rng: random.Random) -> Sent:
    """The user's `turn`-th update: /guide, then a press on its menu, then a search."""
    kind = ("guide", "press", "search")[turn % 3]
    if kind == "press":
        menus = [m for m in standin.chat(user) if m.callback_data() and not m.deleted]
        if menus:
            message = menus[-1]
            data = message.callback_data()[0]
            update_id = standin.press_button(user, message.message_id, data)
            return Sent(update_id, user, kind, ("editMessageText", "sendMessage"))
        kind = "search"  # its menu has not come (it would have, but never block the run)
    text = "/guide" if kind == "guide" else rng.choice(SEARCHES)
    update_id = standin.send_message(text, user_id=user, first_name="Bea")
    return Sent(update_id, user, kind, ("sendMessage",))


async def _post_all(standin: StandIn, users: int, seconds: float, rate: float) -> list[Sent]:
    """Queue `rate` updates a second for `seconds`, users in shuffled rounds."""
    rng = random.Random(7)
    # One shuffled order, the same every round: each user's updates are exactly a round
    # (users / rate seconds) apart, never closer at a round's edge.
    order = [FIRST_USER + n for n in range(users)]
    rng.shuffle(order)
    sent: list[Sent] = []
    total = int(rate * seconds)
    started = time.monotonic()
    for index in range(total):
        user = order[index % users]
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(_act(standin, user, index // users, rng))
    return sent


def _latencies(standin: StandIn, sent: list[Sent]) -> tuple[list[float], float] | None:
    """Each update's POST-to-reply time, and the last reply's time; None until all came."""
    posted = {p.update_id: p.at for p in standin.webhook_posts if p.status == 200}
    replies: dict[int, list[Call]] = {}
    for call in standin.calls:
        if call.method in ("sendMessage", "editMessageText") and call.ok:
            replies.setdefault(int(call.params.get("chat_id", 0)), []).append(call)
    out: list[float] = []
    last = 0.0
    taken: dict[int, int] = {}  # per chat, replies already matched to earlier updates
    for item in sent:
        at = posted.get(item.update_id)
        if at is None:
            return None
        # A chat's updates are handled in order, one reply each: the first reply not yet
        # matched, after the POST, is this update's (even if it came after the next POST).
        chat = replies.get(item.chat, [])
        index = taken.get(item.chat, 0)
        while index < len(chat) and (chat[index].at < at or chat[index].method not in item.methods):
            index += 1
        if index == len(chat):
            return None
        taken[item.chat] = index + 1
        out.append(chat[index].at - at)
        last = max(last, chat[index].at)
    return out, last


@dataclass
class Result:
    """What one run measured."""

    latencies: list[float]  # seconds, POST to reply, one per update
    per_s: float  # updates answered a second, first POST to last reply
    sent: list[Sent]
    cpu_ms: float  # the bot process's CPU time per update
    code: int  # the bot's exit status after SIGTERM


async def _all_answered(standin: StandIn, sent: list[Sent]) -> tuple[list[float], float]:
    """Wait for every answer, looking a few times a second (not at every call: a look
    costs milliseconds of this process's CPU, which the bot on this machine would miss)."""
    deadline = time.monotonic() + ANSWERS_WITHIN_S
    while (found := _latencies(standin, sent)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every update answered within {ANSWERS_WITHIN_S:g} s")
        await asyncio.sleep(0.25)
    return found


async def run(
    users: int, seconds: float, rate: float = RATE, program: tuple[str, ...] = OURS
) -> Result:
    """Run the bot (or the baseline) and the load, then stop it."""
    with scratch_dir() as folder:
        async with StandIn(chat_rate=1.0, global_rate=None) as standin:
            port = _free_port()
            standin.deliver_webhooks_to(f"http://127.0.0.1:{port}")
            process = await _start_bot(folder, standin.api_root, port, program)
            lines: list[str] = []
            try:
                await _until_taking_updates(process, lines)
                drain = asyncio.create_task(_drain(process, lines))
                cpu = _cpu_seconds(process.pid)
                first = time.monotonic()
                sent = await _post_all(standin, users, seconds, rate)
                found = await _all_answered(standin, sent)
                cpu = _cpu_seconds(process.pid) - cpu
            except (TimeoutError, BenchError) as exc:
                raise BenchError(f"{exc}\n" + "\n".join(lines[-20:])) from None
            finally:
                process.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(process.wait(), 30)
            await drain
            refused = [p for p in standin.webhook_posts if p.status != 200]
            if refused:
                raise BenchError(f"{len(refused)} POST(s) not answered 200: {refused[:3]}")
    latencies, last = found
    return Result(latencies, len(sent) / (last - first), sent, cpu * 1000 / len(sent), code)


def _report(title: str, result: Result) -> float:
    """Print one run's figures; return its p99 in milliseconds."""
    latencies, sent = result.latencies, result.sent
    kinds = {k: sum(1 for s in sent if s.kind == k) for k in ("guide", "press", "search")}
    p99 = percentile(latencies, 99) * 1000
    print(f"{title}:")
    print(
        f"  {len(sent)} updates ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"every one answered; answered at {result.per_s:.1f}/s"
    )
    print(
        f"  POST to reply at the stand-in: p50 {percentile(latencies, 50) * 1000:.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(f"  CPU: {result.cpu_ms:.1f} ms per update (load average {_load()})")
    return p99


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the webhook benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 users for 3 s (smoke test)")
    parser.add_argument("--rate", type=float, default=RATE, help="updates a second (100)")
    args = parser.parse_args(argv)
    users, seconds = QUICK if args.quick else FULL
    rate = args.rate
    print(f"webhook benchmark on {machine()}")
    print(
        f"{rate:g} updates/s for {seconds:g} s from {users} users (/guide, a button press, "
        "a search, in turn), posted by the stand-in to `miliabot run` in webhook mode"
    )
    bare = asyncio.run(run(users, seconds, rate, BARE))
    _report("bare PTB, same replies, no database, pacing or metrics (the baseline)", bare)
    result = asyncio.run(run(users, seconds, rate, OURS))
    p99 = _report("miliabot run", result)
    print(
        f"  [target: every update answered, p99 < {TARGET_P99_MS:g} ms: "
        f"{'met' if p99 < TARGET_P99_MS else 'MISSED'}; the baseline's p99 "
        f"{percentile(bare.latencies, 99) * 1000:.1f} ms]"
    )
    for name, code in (("baseline", bare.code), ("bot", result.code)):
        if code != 0:
            raise BenchError(f"the {name} exited with status {code} on SIGTERM")
    per_s = result.per_s
    emit({"webhook_updates_per_s": round(per_s, 2), "webhook_p99_ms": round(p99, 2)})


if __name__ == "__main__":
    main()
