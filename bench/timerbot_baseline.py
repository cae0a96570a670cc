"""The pattern of PTB's timerbot example, at scale: the baseline for `bench.startup`.

A bot built the way python-telegram-bot's ``timerbot.py`` example schedules alarms keeps
one JobQueue job per reminder in memory, so it must load every stored reminder and create
its jobs at start-up (PTB's persistence does not store jobs). This program does exactly
that, against the same database file `bench.startup` uses: in post_init it reads the
reminders with the ORM and calls ``job_queue.run_daily`` for each time of a weekday rule
(``run_repeating`` with an N-day interval for every-N-days rules), then starts polling.

It is ready when a ``run_once(..., 0)`` job queued after all the others runs: by then the
JobQueue's scheduler has taken every job. It then prints one JSON line on stdout, like
`bench.ready_probe`, with the same memory figure: this process's own peak RSS (``VmHWM``).
Reminders are loaded in id order, paused ones skipped, up to --limit.
(The example's ``remove_job_if_exists`` scans every job by name; calling it per reminder at
load time would make loading quadratic, so this baseline leaves it out and is kinder to the
pattern than a literal copy.)
"""

import time

_STARTED = time.monotonic()

import argparse  # noqa: E402 (the first timestamp is taken before any import)
import json  # noqa: E402
import sys  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from datetime import time as clock_time  # noqa: E402
from typing import Any  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from sqlmodel import Session, col, create_engine, select  # noqa: E402
from telegram import Update  # noqa: E402
from telegram.ext import Application, ApplicationBuilder, ContextTypes  # noqa: E402

from bench.procfs import own_peak_rss_kib  # noqa: E402
from miliabot_tg.models import Reminder, User  # noqa: E402
from miliabot_tg.schedule import EveryNDays, Rule  # noqa: E402

_IMPORTED = time.monotonic()


async def alarm(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the reminder, as the example's alarm does."""
    job = context.job
    assert job is not None
    assert job.chat_id is not None
    await context.bot.send_message(job.chat_id, text=f"Time for your {job.data}!")


def _first_every_n(days: EveryNDays, at: clock_time, zone: ZoneInfo, now: datetime) -> datetime:
    """The first firing of an every-N-days rule after now."""
    skip = max((now.date() - days.anchor).days // days.n, 0) * days.n
    day = days.anchor + timedelta(days=skip)
    while (first := datetime.combine(day, at, tzinfo=zone)) <= now:
        day += timedelta(days=days.n)
    return first


def load_reminders(url: str, limit: int) -> list[tuple[Reminder, str | None]]:
    """Read the active reminders and their users' zones, as a bot would at start-up."""
    engine = create_engine(url)
    query = (
        select(Reminder, User.timezone)
        .join(User, col(User.id) == col(Reminder.user_id))
        .where(col(Reminder.paused).is_(False))
        .order_by(col(Reminder.id))
        .limit(limit)
    )
    with Session(engine) as session:
        rows = [(reminder, zone) for reminder, zone in session.exec(query)]
    engine.dispose()
    return rows


def schedule(
    app: Application[Any, Any, Any, Any, Any, Any], rows: list[tuple[Reminder, str | None]]
) -> int:
    """Create the jobs; return how many."""
    job_queue = app.job_queue
    assert job_queue is not None
    now = datetime.now(UTC)
    jobs = 0
    for reminder, key in rows:
        rule = Rule.from_text(reminder.rule)
        zone = ZoneInfo(key or "UTC")
        for at in rule.times:
            if isinstance(rule.days, EveryNDays):
                job_queue.run_repeating(
                    alarm,
                    interval=timedelta(days=rule.days.n),
                    first=_first_every_n(rule.days, at, zone, now),
                    data=reminder.label,
                    name=str(reminder.id),
                    chat_id=reminder.user_id,
                )
            else:
                # PTB counts days from Sunday (0), ours from Monday (0).
                days = tuple(sorted((d + 1) % 7 for d in rule.days.days))
                job_queue.run_daily(
                    alarm,
                    time=at.replace(tzinfo=zone),
                    days=days,
                    data=reminder.label,
                    name=str(reminder.id),
                    chat_id=reminder.user_id,
                )
            jobs += 1
    return jobs


def main() -> None:
    """Load the reminders into the JobQueue, report readiness, and run until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True, help="SQLAlchemy URL")
    parser.add_argument("--api-url", required=True, help="Bot API root, e.g. the stand-in's")
    parser.add_argument("--token", required=True)
    parser.add_argument("--limit", type=int, required=True, help="reminders to load")
    args = parser.parse_args()
    counts: dict[str, float] = {}

    async def ready(_context: ContextTypes.DEFAULT_TYPE) -> None:
        report = {
            "probe_started_at": _STARTED,
            "imported_at": _IMPORTED,
            "ready_at": time.monotonic(),
            "rss_kib": own_peak_rss_kib(),
            **counts,
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        started = time.monotonic()
        rows = load_reminders(args.database, args.limit)
        loaded = time.monotonic()
        counts["reminders"] = len(rows)
        counts["jobs"] = schedule(app, rows)
        counts["load_s"] = loaded - started
        counts["schedule_s"] = time.monotonic() - loaded
        assert app.job_queue is not None
        # APScheduler drops a job that starts more than a second late (its default
        # misfire grace), which loading this many jobs easily causes: never drop this one.
        app.job_queue.run_once(ready, 0, job_kwargs={"misfire_grace_time": None})

    app = (
        ApplicationBuilder()
        .token(args.token)
        .base_url(f"{args.api_url}/bot")
        .post_init(post_init)
        .build()
    )
    app.run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
