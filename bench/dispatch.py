"""Dispatch throughput with pacing off: 10,000 due reminders, end to end, per database.

Each run seeds 10,000 users with one reminder each (the realistic mix of kinds, rules and
zones), all due now, builds the real application with `build_application` (the Pacer in
place but its rates at 1e9/s), and awaits `Dispatcher.run_cycle()` until every reminder
was attempted: materializing occurrences, claiming them, sending with the policy's
concurrency and recording each outcome. It then checks that each user got exactly one
message and every occurrence is 'sent'.

Beside it, in the same run and against the same stand-in: a bare python-telegram-bot loop
(a plain `Application`, no rate limiter) sending the same number of the same reminder
message with the same concurrency, before, between and after the dispatcher's runs. The
stand-in runs in a child process with its limits off, so CPU time (`time.process_time`,
all threads of this process) is the bot's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.ext import ApplicationBuilder, Defaults

from bench.common import (
    BenchError,
    StandInProcess,
    emit,
    exactly_once,
    machine,
    occurrence_statuses,
    one_each,
    scratch_dir,
    scratch_postgres,
    seed,
    standin_process,
)
from miliabot_tg.app import build_application
from miliabot_tg.config import Settings
from miliabot_tg.content import load_guide
from miliabot_tg.db import make_engine, migrate
from miliabot_tg.dispatch import DispatchPolicy
from miliabot_tg.handlers import Deps
from miliabot_tg.models import utcnow
from miliabot_tg.paths import bundled_dir
from miliabot_tg.reminders.texts import reminder_message, tip_for
from miliabot_tg.standin import DEFAULT_TOKEN

FULL = 10_000
QUICK = 200
TARGET_RATIO = 0.7
UNPACED = 1e9  # messages/s: the Pacer stays in the path but never waits
BARE_FIRST_ID = 700_000_000
GUIDE = load_guide(bundled_dir("content"))


@dataclass(frozen=True)
class Figures:
    """One measured run."""

    name: str
    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.cpu_seconds / self.messages * 1000

    def line(self) -> str:
        return (
            f"{self.name:>26}: {self.messages:,} in {self.seconds:.2f} s = "
            f"{self.per_s:,.0f}/s, {self.cpu_ms:.2f} ms CPU each"
        )


async def bare_loop(standin: StandInProcess, count: int, *, first_id: int) -> Figures:
    """Send `count` reminder messages with a plain PTB bot, as many at once as the policy."""
    text, keyboard = reminder_message(
        occurrence_id=123_456,
        kind="sunscreen",
        label="sunscreen",
        tip=tip_for(GUIDE, "sunscreen", 123_456),
        scheduled_local=utcnow(),
        late=False,
        follow_up=False,
    )
    app = (
        ApplicationBuilder()
        .token(DEFAULT_TOKEN)
        .base_url(f"{standin.api_root}/bot")
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        .build()
    )
    chats = [first_id + i for i in range(count)]
    waiting = iter(chats)

    async def worker() -> None:
        # A fixed set of workers, not one task per message: the cheapest way to keep
        # `concurrency` sends in flight.
        for chat_id in waiting:
            await app.bot.send_message(chat_id, text, reply_markup=keyboard)

    async with app:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(DispatchPolicy().concurrency)))
        figures = Figures(
            "bare PTB send_message loop",
            count,
            time.perf_counter() - started,
            time.process_time() - cpu,
        )
    exactly_once(await standin.sends(), chats)
    return figures


async def dispatcher_run(
    standin: StandInProcess, url: str, name: str, count: int, *, first_id: int
) -> Figures:
    """Seed `count` due reminders in the database at `url`, dispatch them all, verify."""
    engine = make_engine(url)
    try:
        migrate(engine)
        now = utcnow()
        population = one_each(count, now=now, first_id=first_id)
        seed(engine, population, due=[now - timedelta(seconds=1)] * count, now=now)
        settings = Settings(
            api_url=standin.api_root,
            database_url=url,
            global_rate=UNPACED,
            chat_rate=UNPACED,
        )
        deps = Deps(settings=settings, engine=engine, guide=GUIDE, clock=utcnow)
        built = build_application(deps, DEFAULT_TOKEN, dispatch=False)
        async with built.app:
            started, cpu = time.perf_counter(), time.process_time()
            attempted = 0
            while attempted < count:
                more = await built.dispatcher.run_cycle()
                if more == 0:
                    raise BenchError(f"{name}: the dispatcher stopped after {attempted} of {count}")
                attempted += more
            figures = Figures(
                f"dispatcher on {name}",
                count,
                time.perf_counter() - started,
                time.process_time() - cpu,
            )
        exactly_once(await standin.sends(), [p.user_id for p in population])
        statuses = occurrence_statuses(engine)
        if statuses != {"sent": count}:
            raise BenchError(f"{name}: occurrences by status {statuses}, expected {count} sent")
        return figures
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Measured:
    """The bare loop's three runs and the dispatcher's two, in the order they ran."""

    bare: list[Figures]
    on_sqlite: Figures
    on_postgres: Figures

    @property
    def bare_per_s(self) -> float:
        return statistics.mean(run.per_s for run in self.bare)

    def ratio(self, run: Figures, neighbours: Sequence[Figures]) -> float:
        return run.per_s / statistics.mean(bare.per_s for bare in neighbours)


async def measure(count: int) -> Measured:
    """Bare, SQLite, bare, PostgreSQL, bare: one stand-in for all.

    Each database's run is compared with the bare runs just before and after it, because
    a small VM like the one these figures come from drifts by 10-20% within a minute or
    two; one bare run for both would make the ratios mostly measure the drift.
    """
    async with standin_process() as standin:
        # Warm up the client side (lazy imports, first connections) before anything is timed.
        await bare_loop(standin, 64, first_id=BARE_FIRST_ID - 1000)
        bare = [await bare_loop(standin, count, first_id=BARE_FIRST_ID)]
        print(bare[-1].line(), flush=True)
        with scratch_dir() as folder:
            url = f"sqlite:///{folder / 'bot.sqlite3'}"
            on_sqlite = await dispatcher_run(standin, url, "SQLite", count, first_id=100_000_000)
        print(on_sqlite.line(), flush=True)
        bare.append(await bare_loop(standin, count, first_id=BARE_FIRST_ID + count))
        print(bare[-1].line(), flush=True)
        with scratch_postgres() as url:
            on_postgres = await dispatcher_run(
                standin, url, "PostgreSQL", count, first_id=300_000_000
            )
        print(on_postgres.line(), flush=True)
        bare.append(await bare_loop(standin, count, first_id=BARE_FIRST_ID + 2 * count))
        print(bare[-1].line(), flush=True)
    return Measured(bare, on_sqlite, on_postgres)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the dispatch benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 reminders (smoke test)")
    args = parser.parse_args(argv)
    count = QUICK if args.quick else FULL
    print(f"dispatch benchmark on {machine()}")
    print(f"{count:,} due reminders, pacing off, {DispatchPolicy().concurrency} sends in flight")
    measured = asyncio.run(measure(count))
    bare = measured.bare
    print(f"bare loop: {measured.bare_per_s:,.0f}/s, the mean of its {len(bare)} runs")
    sqlite_ratio = measured.ratio(measured.on_sqlite, bare[:2])
    postgres_ratio = measured.ratio(measured.on_postgres, bare[1:])
    for name, ratio in (("SQLite", sqlite_ratio), ("PostgreSQL", postgres_ratio)):
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(
            f"{name}: {ratio:.2f} of the bare loop's rate in the runs beside it "
            f"[target >= {TARGET_RATIO}: {verdict}]"
        )
    emit(
        {
            "sqlite_per_s": round(measured.on_sqlite.per_s, 1),
            "postgres_per_s": round(measured.on_postgres.per_s, 1),
            "bare_ptb_per_s": round(measured.bare_per_s, 1),
            "sqlite_ratio": round(sqlite_ratio, 3),
            "postgres_ratio": round(postgres_ratio, 3),
        }
    )


if __name__ == "__main__":
    main()
