"""Punctuality: 1,000 reminders falling due evenly over the next 60 seconds, real clock.

The real application runs in this process as `miliabot run` would start it, with
`dispatch=True` (post_init starts the dispatcher on PTB's JobQueue), on a SQLite file,
with the default pacing (30 messages/s overall, 1/s per chat) because that is what users
get. The stand-in runs in a child process with Telegram's limits on (30/s, 1/s per chat),
so a pacing mistake would show up as a 429 and a late reminder. Each of 1,000 users has
one reminder; their `next_due_at` are spread evenly from a few seconds after start-up.

Lateness is the stand-in's wall-clock time at the arrival of the sendMessage request minus
`next_due_at`. The stand-in and the bot share this machine's clock. Every reminder must
arrive exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bench.common import (
    BenchError,
    StandInProcess,
    emit,
    exactly_once,
    machine,
    occurrence_statuses,
    one_each,
    percentile,
    scratch_dir,
    seed,
    standin_process,
)
from miliabot_tg.app import build_application
from miliabot_tg.config import Settings
from miliabot_tg.content import load_guide
from miliabot_tg.db import make_engine, migrate
from miliabot_tg.handlers import Deps
from miliabot_tg.models import utcnow
from miliabot_tg.pacing import Pacer
from miliabot_tg.paths import bundled_dir
from miliabot_tg.standin import DEFAULT_TOKEN

FULL = (1_000, 60.0, 3.0)  # reminders, seconds they are spread over, seconds before the first
QUICK = (40, 2.0, 3.0)
TARGET_P99_S = 1.0
TELEGRAM_GLOBAL_RATE = 30.0
TELEGRAM_CHAT_RATE = 1.0
FIRST_ID = 500_000_000


@dataclass(frozen=True)
class Result:
    """Lateness of each reminder, in seconds, and what the pacing saw."""

    lateness: list[float]
    rate_limited: int
    pacer_wait_max: float
    started_before_first_due_s: float


async def _wait_for_all(standin: StandInProcess, count: int, deadline: float) -> None:
    while time.time() < deadline:
        sent, _ = await standin.count()
        if sent >= count:
            return
        await asyncio.sleep(0.25)


async def measure(count: int, span: float, lead: float) -> Result:
    """Seed, start the bot, let the reminders fall due, and collect their arrivals."""
    async with standin_process(
        global_rate=TELEGRAM_GLOBAL_RATE, chat_rate=TELEGRAM_CHAT_RATE
    ) as standin:
        with scratch_dir() as folder:
            url = f"sqlite:///{folder / 'bot.sqlite3'}"
            engine = make_engine(url)
            try:
                migrate(engine)
                now = utcnow()
                first = now + timedelta(seconds=lead)
                due = [first + timedelta(seconds=span * i / count) for i in range(count)]
                population = one_each(count, now=now, first_id=FIRST_ID)
                seed(engine, population, due=due, now=now)
                settings = Settings(api_url=standin.api_root, database_url=url)
                deps = Deps(
                    settings=settings,
                    engine=engine,
                    guide=load_guide(bundled_dir("content")),
                    clock=utcnow,
                )
                app = build_application(deps, DEFAULT_TOKEN, dispatch=True).app
                async with app:
                    # The order run_polling uses: post_init, polling, then the JobQueue.
                    assert app.post_init is not None
                    assert app.updater is not None
                    await app.post_init(app)
                    await app.updater.start_polling(poll_interval=0.0, timeout=1)
                    await app.start()
                    head_start = (first - utcnow()).total_seconds()
                    try:
                        await _wait_for_all(standin, count, due[-1].timestamp() + 20)
                        await asyncio.sleep(1.0)  # room for a duplicate to show up
                    finally:
                        await app.updater.stop()
                        await app.stop()
                pacer = app.bot.rate_limiter
                assert isinstance(pacer, Pacer)
                sends = await standin.sends()
                _, rate_limited = await standin.count()
                arrivals = exactly_once(sends, [p.user_id for p in population])
                statuses = occurrence_statuses(engine)
                if statuses != {"sent": count}:
                    raise BenchError(f"occurrences by status {statuses}, expected {count} sent")
            finally:
                engine.dispose()
    lateness = [
        arrivals[person.user_id].at - when.timestamp()
        for person, when in zip(population, due, strict=True)
    ]
    return Result(lateness, rate_limited, pacer.stats.wait_max, head_start)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the punctuality benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 reminders over 2 s (smoke test)")
    args = parser.parse_args(argv)
    count, span, lead = QUICK if args.quick else FULL
    print(f"punctuality benchmark on {machine()}")
    print(
        f"{count:,} reminders due evenly over {span:g} s from {lead:g} s after start; "
        f"pacing {TELEGRAM_GLOBAL_RATE:g}/s overall, {TELEGRAM_CHAT_RATE:g}/s per chat"
    )
    result = asyncio.run(measure(count, span, lead))
    if result.started_before_first_due_s <= 0:
        raise BenchError("the bot was not up before the first reminder fell due")
    late = result.lateness
    p50, p99 = percentile(late, 50), percentile(late, 99)
    print(
        f"arrived: {len(late):,} of {count:,}, each exactly once; "
        f"the stand-in answered {result.rate_limited} request(s) with 429"
    )
    print(
        f"lateness: min {min(late) * 1000:.0f} ms, p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {max(late) * 1000:.0f} ms; longest pacing wait "
        f"{result.pacer_wait_max * 1000:.0f} ms  [target p99 < {TARGET_P99_S:g} s: "
        f"{'met' if p99 < TARGET_P99_S else 'MISSED'}]"
    )
    emit({"p50_s": round(p50, 4), "p99_s": round(p99, 4)})


if __name__ == "__main__":
    main()
