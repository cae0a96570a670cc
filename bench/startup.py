"""Start-up with a million stored reminders: seconds until ready to dispatch, and peak RSS.

The database is a SQLite file of realistic users and reminders (presets' times, daily,
weekday, two-days-a-week and every-N-days rules, 17 timezones, some paused, some quiet
hours) whose next occurrences lie over the coming days, computed by the project's own
calendar. It is built once with plain sqlite3 bulk inserts and kept in ``bench/.cache/``,
keyed by the schema revision and size, until its first reminder would fall due.

Each run copies the file and starts a fresh ``python -m bench.ready_probe``, which is
``miliabot run`` unchanged plus a report when the dispatcher's first cycle returns (see
that module for what "ready" covers), against the Bot API stand-in running in this
process. Seconds are counted from just before the child is spawned, so they include the
interpreter's start and every import. Peak RSS is the child's own peak at that moment,
``VmHWM`` from its /proc/self/status (not ``ru_maxrss``, which on Linux starts from the size
of the process that forked it: here, one that may just have built the million-row file).

Beside it, `bench.timerbot_baseline` (the pattern of PTB's timerbot example: one JobQueue
job per reminder, loaded from the database at start-up) reads the first 100,000 active
reminders of the same file; its memory is measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    CACHE_DIR,
    ROOT,
    BenchError,
    NextDue,
    emit,
    machine,
    people,
    scratch_dir,
)
from miliabot_tg.db import head_revision, make_engine, migrate, new_session
from miliabot_tg.models import Reminder, User
from miliabot_tg.schedule import Rule
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn

FULL_REMINDERS = 1_000_000
FULL_JOBQUEUE = 100_000
QUICK_REMINDERS = 2_000
QUICK_JOBQUEUE = 1_000
READY_TIMEOUT = 240.0
TARGET_READY_S = 2.0
TARGET_RSS_MIB = 150.0
_CHUNK = 50_000


def _sql_time(when: datetime) -> str:
    """A UTC datetime as SQLAlchemy stores it in SQLite (naive, microseconds)."""
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def build(path: Path, reminders: int) -> dict[str, Any]:
    """Write the database file: schema by the project's migrations, rows by sqlite3."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for leftover in path.parent.glob(building.name + "*"):
        leftover.unlink()
    engine = make_engine(f"sqlite:///{building}")
    migrate(engine)
    engine.dispose()

    now = datetime.now(UTC)
    # Everything falls due from a day on, so the file stays valid for about a day.
    next_due = NextDue(now + timedelta(days=1))
    seen = _sql_time(now - timedelta(days=1))
    created = _sql_time(now - timedelta(days=30))
    users: list[tuple[Any, ...]] = []
    prefs: list[tuple[Any, ...]] = []
    earliest: datetime | None = None

    def reminder_rows() -> Iterator[tuple[Any, ...]]:
        nonlocal earliest
        for person in people(reminders, today=now.date()):
            users.append(
                (
                    person.user_id,
                    "Bench",
                    person.language_code,
                    person.timezone,
                    "active",
                    created,
                    seen,
                )
            )
            if person.quiet is not None:
                prefs.append((person.user_id, *person.quiet, 0, seen))
            for kind, label, rule, paused in person.reminders:
                due = None if paused else next_due(rule, person.timezone)
                if due is not None and (earliest is None or due < earliest):
                    earliest = due
                yield (
                    person.user_id,
                    kind,
                    label,
                    rule,
                    int(paused),
                    None if due is None else _sql_time(due),
                    created,
                    created,
                )

    db = sqlite3.connect(building, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        # Indexes are dropped for the load and recreated from the migrations' own SQL.
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            db.execute(f'DROP INDEX "{name}"')
        db.execute("BEGIN")
        for chunk in _chunks(reminder_rows()):
            db.executemany(
                "INSERT INTO reminders (user_id, kind, label, rule, paused, next_due_at,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                chunk,
            )
        db.executemany(
            "INSERT INTO users (id, first_name, language_code, timezone, status, first_seen,"
            " last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            users,
        )
        db.executemany(
            "INSERT INTO user_preferences (user_id, quiet_start, quiet_end, reminders_paused,"
            " updated_at) VALUES (?, ?, ?, ?, ?)",
            prefs,
        )
        db.execute("COMMIT")
        for _name, sql in indexes:
            db.execute(sql)
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    if earliest is None:
        raise BenchError("no active reminders were made")
    _check(building, reminders)
    building.replace(path)
    meta = {
        "reminders": reminders,
        "users": len(users),
        "valid_until": earliest.isoformat(),
        "built_at": now.isoformat(),
        "build_s": round(time.perf_counter() - started, 1),
        "bytes": path.stat().st_size,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))
    return meta


def _check(path: Path, reminders: int) -> None:
    """Read the rows back through the models: the bot must see what it would have written."""
    engine = make_engine(f"sqlite:///{path}")
    try:
        with new_session(engine) as session:
            reminder = session.get(Reminder, reminders)
            if reminder is None:
                raise BenchError(f"reminder {reminders} is missing")
            user = session.get(User, reminder.user_id)
            if user is None or reminder.created_at.tzinfo is None:
                raise BenchError("the rows do not read back as the models expect")
            Rule.from_text(reminder.rule)
    finally:
        engine.dispose()


def cached_database(reminders: int, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The database file for this size and schema, built unless a valid one is cached."""
    revision = head_revision(make_engine("sqlite://"))
    path = cache_dir / f"reminders-{revision}-{reminders}.sqlite3"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        valid_until = datetime.fromisoformat(meta["valid_until"])
        if valid_until - datetime.now(UTC) > timedelta(minutes=15):
            meta["cached"] = True
            return path, meta
    print(f"building {reminders:,} reminders in {path} (once; cached until they fall due)...")
    for old in cache_dir.glob(f"reminders-*-{reminders}.*"):
        old.unlink()
    meta = build(path, reminders)
    meta["cached"] = False
    return path, meta


# --- running a child until it reports readiness ------------------------------------------------


def _child_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    return {**clean, "PYTHONPATH": str(ROOT), **extra}


async def run_until_ready(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path, standin: StandIn
) -> dict[str, Any]:
    """Spawn `argv`, wait for its JSON report, stop it with SIGTERM; return the report.

    Times in the report become seconds since the spawn; `first_get_updates_s` is when the
    stand-in saw the child's first long-poll.
    """
    calls_before = len(standin.calls)
    spawned = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    report: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while report is None:
                line = await process.stdout.readline()
                if not line:
                    break
                if line.startswith(b"{"):
                    report = json.loads(line)
    except TimeoutError:
        pass
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
    if report is None or process.returncode != 0:
        tail = stderr.decode(errors="replace")[-3000:]
        raise BenchError(f"{argv[-1]} did not get ready (exit {process.returncode}):\n{tail}")
    polls = [c.at for c in standin.calls[calls_before:] if c.method == "getUpdates"]
    out = {key: value - spawned if key.endswith("_at") else value for key, value in report.items()}
    out["first_get_updates_s"] = polls[0] - spawned if polls else float("nan")
    return out


async def measure(
    database: Path, *, runs: int, jobqueue_reminders: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start ours `runs` times on copies of the file, then the timerbot pattern once."""
    ours: list[dict[str, Any]] = []
    async with StandIn(global_rate=None, chat_rate=None) as standin:
        for _ in range(runs):
            with scratch_dir() as folder:
                copy = folder / "bot.sqlite3"
                shutil.copyfile(database, copy)
                env = _child_env(
                    MILIABOT_TOKEN=DEFAULT_TOKEN,
                    MILIABOT_API_URL=standin.api_root,
                    MILIABOT_DATABASE_URL=f"sqlite:///{copy}",
                )
                argv = [sys.executable, "-m", "bench.ready_probe"]
                ours.append(await run_until_ready(argv, env=env, cwd=folder, standin=standin))
        with scratch_dir() as folder:
            copy = folder / "bot.sqlite3"
            shutil.copyfile(database, copy)
            argv = [
                sys.executable,
                "-m",
                "bench.timerbot_baseline",
                "--database",
                f"sqlite:///{copy}",
                "--api-url",
                standin.api_root,
                "--token",
                DEFAULT_TOKEN,
                "--limit",
                str(jobqueue_reminders),
            ]
            baseline = await run_until_ready(argv, env=_child_env(), cwd=folder, standin=standin)
    return ours, baseline


def main(argv: Sequence[str] | None = None) -> None:
    """Run the start-up benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--runs", type=int, default=None, help="start-ups of ours (median)")
    args = parser.parse_args(argv)
    reminders = QUICK_REMINDERS if args.quick else FULL_REMINDERS
    jobqueue = QUICK_JOBQUEUE if args.quick else FULL_JOBQUEUE
    runs = args.runs or (1 if args.quick else 3)

    print(f"startup benchmark on {machine()}")
    database, meta = cached_database(reminders, args.cache_dir)
    how = "cached" if meta["cached"] else f"built in {meta['build_s']} s"
    print(
        f"database: {meta['reminders']:,} reminders of {meta['users']:,} users, "
        f"{meta['bytes'] / 2**20:.0f} MiB, {how}; first due {meta['valid_until']}"
    )
    ours, baseline = asyncio.run(measure(database, runs=runs, jobqueue_reminders=jobqueue))

    for index, run in enumerate(ours, 1):
        if run["attempted"] != 0:
            raise BenchError(f"the first cycle sent {run['attempted']} reminders; none were due")
        imports = run["imported_at"] - run["probe_started_at"]
        print(
            f"  ours, run {index}: ready {run['ready_at']:.2f} s (interpreter "
            f"{run['probe_started_at']:.2f} s, imports {imports:.2f} s, "
            f"run path {run['ready_at'] - run['imported_at']:.2f} s; first getUpdates at "
            f"{run['first_get_updates_s']:.2f} s), peak RSS {run['rss_kib'] / 1024:.0f} MiB"
        )
    ready_s = statistics.median(run["ready_at"] for run in ours)
    rss_mib = statistics.median(run["rss_kib"] / 1024 for run in ours)
    print(
        f"ours, {reminders:,} reminders: ready in {ready_s:.2f} s (median of {runs}), "
        f"peak RSS {rss_mib:.0f} MiB  [targets: < {TARGET_READY_S} s, < {TARGET_RSS_MIB:.0f} MiB: "
        f"{'met' if ready_s < TARGET_READY_S and rss_mib < TARGET_RSS_MIB else 'MISSED'}]"
    )
    jq_ready = baseline["ready_at"]
    jq_rss = baseline["rss_kib"] / 1024
    print(
        f"timerbot pattern, {int(baseline['reminders']):,} reminders as "
        f"{int(baseline['jobs']):,} JobQueue jobs: ready in {jq_ready:.2f} s (reading "
        f"{baseline['load_s']:.2f} s, creating jobs {baseline['schedule_s']:.2f} s), "
        f"peak RSS {jq_rss:.0f} MiB"
    )
    if int(baseline["reminders"]) != jobqueue:
        raise BenchError(f"the baseline loaded {baseline['reminders']} reminders, not {jobqueue}")
    emit(
        {
            "reminders": reminders,
            "ready_s": round(ready_s, 3),
            "rss_mib": round(rss_mib, 1),
            "jobqueue_reminders": jobqueue,
            "jobqueue_ready_s": round(jq_ready, 3),
            "jobqueue_rss_mib": round(jq_rss, 1),
        }
    )


if __name__ == "__main__":
    main()
