"""Broadcast benchmarks: pacing, memory, and reminders while a broadcast runs.

Three measurements, each its own command ending in one JSON line:

* ``pacing``: 3,000 recipients at a configured 300 messages/s against the stand-in
  enforcing 300/s overall and 1/s per chat. The achieved rate is (sends - 1) over the
  time from the first to the last accepted send; the stand-in counts its 429 answers.
* ``memory``: 100,000 recipients with pacing off, in a child process of its own: its
  resident size once idle, then its peak (`VmHWM`, reset with `/proc/self/clear_refs`
  after the idle reading) while it records the recipients and sends to all of them.
* ``during``: 1,000 reminders due evenly over 30 s, first alone (the baseline) and then
  while a 10,000-recipient broadcast runs at 300/s, in the same run; lateness is the
  stand-in's arrival time minus the reminder's due time.

The bot runs as `miliabot run` starts it (`dispatch=True`: the dispatcher and the
broadcaster start in post_init); the stand-in runs in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from bench.common import (
    ROOT,
    USERS,
    BenchError,
    StandInProcess,
    emit,
    exactly_once,
    machine,
    one_each,
    percentile,
    scratch_dir,
    seed,
    standin_process,
)
from miliabot_tg import broadcasts as store
from miliabot_tg.app import BotApplication, build_application
from miliabot_tg.config import Settings
from miliabot_tg.content import load_guide
from miliabot_tg.db import make_engine, migrate
from miliabot_tg.handlers import Deps
from miliabot_tg.models import utcnow
from miliabot_tg.paths import bundled_dir
from miliabot_tg.standin import DEFAULT_TOKEN

GUIDE = load_guide(bundled_dir("content"))
BROADCAST_FIRST_ID = 700_000_000
REMINDER_FIRST_ID = 600_000_000
UNPACED = 1_000_000.0
TEXT = "📣 <b>New in the guide:</b> how to tell milia from whiteheads."


def seed_users(engine: Engine, count: int, *, first_id: int, now: datetime) -> list[int]:
    """Insert `count` active users (UTC, no quiet hours) in big executemany batches."""
    ids = list(range(first_id, first_id + count))
    for start in range(0, count, 10_000):
        rows = [
            {
                "id": user_id,
                "first_name": "Bench",
                "language_code": "en",
                "timezone": "UTC",
                "status": "active",
                "first_seen": now - timedelta(days=30),
                "last_seen": now - timedelta(days=1),
            }
            for user_id in ids[start : start + 10_000]
        ]
        with engine.begin() as conn:
            conn.execute(insert(USERS), rows)
    return ids


def draft(engine: Engine, now: datetime) -> int:
    with engine.begin() as conn:
        return store.create_draft(conn, created_by=0, now=now, text=TEXT)


def build(api_root: str, url: str, engine: Engine, rate: float) -> BotApplication:
    settings = Settings(api_url=api_root, database_url=url, global_rate=rate, chat_rate=1.0)
    deps = Deps(settings=settings, engine=engine, guide=GUIDE, clock=utcnow)
    return build_application(deps, DEFAULT_TOKEN, dispatch=True).app


async def start_app(app: BotApplication) -> None:
    # The order run_polling uses: post_init, polling, then the JobQueue.
    assert app.post_init is not None
    assert app.updater is not None
    await app.post_init(app)
    await app.updater.start_polling(poll_interval=0.0, timeout=1)
    await app.start()


async def stop_app(app: BotApplication) -> None:
    assert app.updater is not None
    assert app.post_shutdown is not None
    await app.updater.stop()
    await app.stop()
    await app.post_shutdown(app)


async def wait_for_sends(standin: StandInProcess, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sent, _ = await standin.count()
        if sent >= count:
            return
        await asyncio.sleep(0.2)
    sent, _ = await standin.count()
    raise BenchError(f"only {sent} of {count} messages arrived within {timeout:g} s")


# --- pacing ------------------------------------------------------------------------------------


async def pacing(count: int, rate: float) -> dict[str, float | int]:
    async with standin_process(global_rate=rate, chat_rate=1.0) as standin:
        with scratch_dir() as folder:
            url = f"sqlite:///{folder / 'bot.sqlite3'}"
            engine = make_engine(url)
            try:
                migrate(engine)
                now = utcnow()
                ids = seed_users(engine, count, first_id=BROADCAST_FIRST_ID, now=now)
                broadcast_id = draft(engine, now)
                app = build(standin.api_root, url, engine, rate)
                async with app:
                    await start_app(app)
                    try:
                        store.start(engine, broadcast_id, utcnow(), "UTC")
                        await wait_for_sends(standin, count, count / rate * 3 + 30)
                        await asyncio.sleep(1.0)  # room for a duplicate to show up
                    finally:
                        await stop_app(app)
                arrivals = exactly_once(await standin.sends(), ids)
                _, refused = await standin.count()
            finally:
                engine.dispose()
    times = sorted(send.at for send in arrivals.values())
    achieved = (len(times) - 1) / (times[-1] - times[0])
    print(f"{count:,} recipients, configured {rate:g}/s; stand-in enforcing {rate:g}/s, 1/s a chat")
    print(f"achieved {achieved:.1f}/s ({achieved / rate - 1:+.1%} of configured), {refused} 429s")
    return {
        "configured_per_s": rate,
        "achieved_per_s": round(achieved, 2),
        "responses_429": refused,
    }


# --- memory ------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/self/status")


async def memory_child(api_root: str, url: str, count: int) -> dict[str, Any]:
    """In the child: start the bot, settle, reset the peak, then broadcast to everyone."""
    engine = make_engine(url)
    app = build(api_root, url, engine, UNPACED)
    async with app:
        await start_app(app)
        try:
            await asyncio.sleep(2.0)  # idle: polling, the dispatcher's first cycle
            idle = _status_kib("VmRSS")
            # VmHWM := VmRSS from here on, so the peak is the broadcast's alone.
            await asyncio.to_thread(Path("/proc/self/clear_refs").write_text, "5")
            started = time.perf_counter()
            broadcast_id = draft(engine, utcnow())
            await asyncio.to_thread(store.start, engine, broadcast_id, utcnow(), "UTC")
            while True:
                with engine.connect() as conn:
                    progress = store.progress(conn, broadcast_id)
                if progress is not None and progress.status == "done":
                    break
                await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - started
            peak = _status_kib("VmHWM")
        finally:
            await stop_app(app)
    engine.dispose()
    return {"idle_kib": idle, "peak_kib": peak, "seconds": elapsed, "sent": progress.sent}


async def memory(count: int) -> dict[str, float | int]:
    async with standin_process() as standin:
        with scratch_dir() as folder:
            url = f"sqlite:///{folder / 'bot.sqlite3'}"
            engine = make_engine(url)
            migrate(engine)
            seed_users(engine, count, first_id=BROADCAST_FIRST_ID, now=utcnow())
            engine.dispose()
            # A fresh interpreter, so its memory is its own and not this parent's.
            child = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "bench.broadcasts", "memory-child", standin.api_root, url],
                env={**os.environ, "BENCH_COUNT": str(count)},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=3600,
                check=False,
            )
            if child.returncode != 0:
                raise BenchError(f"the bot process failed:\n{child.stdout}{child.stderr}")
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            sent, _ = await standin.count()
    if figures["sent"] != count or sent != count:
        raise BenchError(f"{figures['sent']} recorded sent, {sent} arrived, of {count}")
    growth = (figures["peak_kib"] - figures["idle_kib"]) / 1024
    print(f"{count:,} recipients, pacing off: all sent in {figures['seconds']:.1f} s")
    print(
        f"bot idle {figures['idle_kib'] / 1024:.1f} MiB, peak {figures['peak_kib'] / 1024:.1f} MiB"
        f" (VmHWM of its own process): growth {growth:.1f} MiB"
    )
    return {"recipients": count, "rss_growth_mib": round(growth, 2)}


# --- reminders during a broadcast ----------------------------------------------------------------


async def lateness(
    reminders: int, span: float, recipients: int, rate: float
) -> tuple[list[float], float]:
    """Reminders' lateness (s), with a broadcast of `recipients` running (0: none)."""
    async with standin_process(global_rate=rate, chat_rate=1.0) as standin:
        with scratch_dir() as folder:
            url = f"sqlite:///{folder / 'bot.sqlite3'}"
            engine = make_engine(url)
            try:
                migrate(engine)
                now = utcnow()
                lead = 5.0
                first = now + timedelta(seconds=lead)
                due = [first + timedelta(seconds=span * i / reminders) for i in range(reminders)]
                population = one_each(reminders, now=now, first_id=REMINDER_FIRST_ID)
                seed(engine, population, due=due, now=now)
                seed_users(engine, recipients, first_id=BROADCAST_FIRST_ID, now=now)
                # Only the broadcast's own users: the reminder users opt out of it.
                with engine.begin() as conn:
                    for person in population:
                        store.set_announcements(conn, person.user_id, False, now)
                app = build(standin.api_root, url, engine, rate)
                async with app:
                    await start_app(app)
                    try:
                        if recipients:
                            broadcast_id = draft(engine, now)
                            store.start(engine, broadcast_id, utcnow(), "UTC")
                        await wait_for_sends(
                            standin,
                            reminders + recipients,
                            span + lead + recipients / rate * 2 + 30,
                        )
                        await asyncio.sleep(1.0)
                    finally:
                        await stop_app(app)
                sends = await standin.sends()
                _, refused = await standin.count()
            finally:
                engine.dispose()
    arrivals = exactly_once(
        [s for s in sends if s.chat_id < BROADCAST_FIRST_ID], [p.user_id for p in population]
    )
    if recipients:
        exactly_once(
            [s for s in sends if s.chat_id >= BROADCAST_FIRST_ID],
            list(range(BROADCAST_FIRST_ID, BROADCAST_FIRST_ID + recipients)),
        )
    late = [
        arrivals[p.user_id].at - when.timestamp() for p, when in zip(population, due, strict=True)
    ]
    return late, refused


async def during(reminders: int, span: float, recipients: int, rate: float) -> dict[str, float]:
    alone, _ = await lateness(reminders, span, 0, rate)
    print(
        f"{reminders:,} reminders over {span:g} s alone: lateness p50 "
        f"{percentile(alone, 50):.3f} s, p99 {percentile(alone, 99):.3f} s, max {max(alone):.3f} s"
    )
    busy, refused = await lateness(reminders, span, recipients, rate)
    print(
        f"the same while {recipients:,} recipients get a broadcast at {rate:g}/s: p50 "
        f"{percentile(busy, 50):.3f} s, p99 {percentile(busy, 99):.3f} s, max {max(busy):.3f} s;"
        f" {refused} 429s"
    )
    return {
        "during_broadcast_p99_s": round(percentile(busy, 99), 3),
        "during_broadcast_max_s": round(max(busy), 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["pacing", "memory", "during", "memory-child"])
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args(argv)
    if args.which == "memory-child":
        api_root, url = args.args
        figures = asyncio.run(memory_child(api_root, url, int(os.environ["BENCH_COUNT"])))
        print(json.dumps(figures), flush=True)
        return
    print(f"broadcast {args.which} benchmark on {machine()}")
    if args.which == "pacing":
        emit(asyncio.run(pacing(300 if args.quick else 3_000, 300.0)))
    elif args.which == "memory":
        emit(asyncio.run(memory(2_000 if args.quick else 100_000)))
    else:
        quick = (50, 3.0, 500) if args.quick else (1_000, 30.0, 10_000)
        emit(asyncio.run(during(*quick, rate=300.0)))


if __name__ == "__main__":
    main()
