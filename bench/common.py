"""What the benchmarks share: test data, scratch databases, the stand-in process, output."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import random
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, func, insert, select

from bench.procfs import own_peak_rss_kib
from miliabot_tg.models import Occurrence, Reminder, User, UserPreferences
from miliabot_tg.schedule import (
    DAILY,
    WEEKDAYS,
    WEEKENDS,
    EveryNDays,
    Rule,
    WeekdaySet,
    next_occurrence,
)
from miliabot_tg.timezones import zone_from_key

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / "bench" / ".cache"
POSTGRES_URL = os.environ.get(
    "MILIABOT_BENCH_POSTGRES_URL",
    os.environ.get("MILIABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
)

USERS: Table = User.__table__  # type: ignore[attr-defined]
REMINDERS: Table = Reminder.__table__  # type: ignore[attr-defined]
PREFERENCES: Table = UserPreferences.__table__  # type: ignore[attr-defined]


class BenchError(Exception):
    """The benchmark did not measure what it claims (nothing sent, duplicates, a crash)."""


# --- output -------------------------------------------------------------------------------------


def emit(result: dict[str, float | int]) -> None:
    """Print the figures as the last line: one JSON object, nothing after it."""
    for key, value in result.items():
        if not (isinstance(value, int) or math.isfinite(value)):
            raise BenchError(f"{key} is {value}")
    print(json.dumps(result), flush=True)


def machine() -> str:
    """One line about the machine the figures come from."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return (
        f"{os.cpu_count()} CPU(s), {model}, {memory} RAM; "
        f"Python {platform.python_version()} on {platform.system()} {platform.release()}"
    )


def peak_rss_mib() -> float:
    """This process's own peak resident set size so far (VmHWM; see bench.procfs)."""
    return own_peak_rss_kib() / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise BenchError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- realistic people and reminders -------------------------------------------------------------

ZONES: tuple[str | None, ...] = (
    "Europe/Berlin",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Moscow",
    "America/New_York",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Asia/Dubai",
    "Australia/Sydney",
    "Africa/Lagos",
    None,  # never set one: the configured default applies
)
LANGUAGES = ("en", "en", "en", "de", "es", "fr", "ru", "pt", "hi", None)
CUSTOM_LABELS = ("water", "retinol", "SPF top-up", "vitamin C serum", "eye cream", "night mask")
KINDS = ("sunscreen", "moisturize", "exfoliate", "custom")
KIND_WEIGHTS = (35, 30, 20, 15)
MORNING = tuple(time(h, m) for h in range(6, 10) for m in (0, 15, 30, 45))
EVENING = tuple(time(h, m) for h in range(19, 23) for m in (0, 30))
DAYTIME = tuple(time(h, m) for h in range(8, 22) for m in (0, 30))


@dataclass(frozen=True)
class Person:
    """A user and their reminders, as rows ready for insertion."""

    user_id: int
    language_code: str | None
    timezone: str | None
    quiet: tuple[str, str] | None
    reminders: tuple[tuple[str, str, str, bool], ...]  # kind, label, rule text, paused


def _rule(rng: random.Random, kind: str, today: date) -> Rule:
    """A rule people would set for this kind: the presets' times, with some spread."""
    if kind == "sunscreen":
        return Rule((rng.choice(MORNING),), rng.choice((DAILY, DAILY, DAILY, WEEKDAYS)))
    if kind == "moisturize":
        return Rule(
            (rng.choice(MORNING), rng.choice(EVENING)), rng.choice((DAILY, DAILY, WEEKDAYS))
        )
    if kind == "exfoliate":
        if rng.random() < 0.5:
            return Rule((rng.choice(EVENING),), WeekdaySet(frozenset(rng.sample(range(7), 2))))
        anchor = today - timedelta(days=rng.randrange(7))
        return Rule((rng.choice(EVENING),), EveryNDays(rng.choice((3, 4, 7)), anchor))
    days = rng.choice((DAILY, DAILY, WEEKENDS, EveryNDays(2, today)))
    return Rule((rng.choice(DAYTIME),), days)


def people(
    reminders: int,
    *,
    seed: int = 1,
    today: date,
    quiet_share: float = 0.1,
    first_id: int = 100_000_000,
) -> Iterator[Person]:
    """Yield users with 1 to 4 reminders each (2.5 on average) until `reminders` are made.

    Ids look like Telegram's (nine digits, from `first_id`); about 5% of reminders are
    paused and `quiet_share` of the users have quiet hours from 22:00 to 07:00.
    """
    rng = random.Random(seed)
    made = 0
    index = 0
    while made < reminders:
        count = min(rng.choice((1, 2, 2, 3, 3, 4)), reminders - made)
        rows = []
        for _ in range(count):
            kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
            label = rng.choice(CUSTOM_LABELS) if kind == "custom" else kind
            paused = rng.random() < 0.05
            rows.append((kind, label, _rule(rng, kind, today).to_text(), paused))
        quiet = ("22:00", "07:00") if rng.random() < quiet_share else None
        yield Person(
            user_id=first_id + index * 7,
            language_code=rng.choice(LANGUAGES),
            timezone=rng.choice(ZONES),
            quiet=quiet,
            reminders=tuple(rows),
        )
        made += count
        index += 1


class NextDue:
    """Each reminder's next occurrence after `after`, computed once per (rule, zone)."""

    def __init__(self, after: datetime, default_tz: str = "UTC") -> None:
        self.after = after
        self.default_tz = default_tz
        self._memo: dict[tuple[str, str | None], datetime] = {}

    def __call__(self, rule_text: str, zone: str | None) -> datetime:
        key = (rule_text, zone)
        found = self._memo.get(key)
        if found is None:
            tz = zone_from_key(zone or self.default_tz)
            found = self._memo[key] = next_occurrence(Rule.from_text(rule_text), tz, self.after)
        return found


def seed(
    engine: Engine,
    population: Sequence[Person],
    *,
    due: Sequence[datetime] | None = None,
    now: datetime,
) -> int:
    """Insert people and reminders with Core executemany; return how many reminders.

    `due`, one per reminder in order, overrides the computed next occurrences (paused
    reminders are then not paused, so that every reminder fires).
    """
    next_due = NextDue(now)
    users: list[dict[str, Any]] = []
    prefs: list[dict[str, Any]] = []
    reminders: list[dict[str, Any]] = []
    for person in population:
        users.append(
            {
                "id": person.user_id,
                "first_name": "Bench",
                "language_code": person.language_code,
                "timezone": person.timezone,
                "status": "active",
                "first_seen": now - timedelta(days=30),
                "last_seen": now - timedelta(days=1),
            }
        )
        if person.quiet is not None and due is None:
            start, end = person.quiet
            prefs.append(
                {
                    "user_id": person.user_id,
                    "quiet_start": start,
                    "quiet_end": end,
                    "reminders_paused": False,
                    "updated_at": now,
                }
            )
        for kind, label, rule, paused in person.reminders:
            if due is not None:
                when: datetime | None = due[len(reminders)]
                paused = False
            else:
                when = None if paused else next_due(rule, person.timezone)
            reminders.append(
                {
                    "user_id": person.user_id,
                    "kind": kind,
                    "label": label,
                    "rule": rule,
                    "paused": paused,
                    "next_due_at": when,
                    "created_at": now - timedelta(days=7),
                    "updated_at": now - timedelta(days=7),
                }
            )
    if due is not None and len(due) != len(reminders):
        raise BenchError(f"{len(due)} due times for {len(reminders)} reminders")
    with engine.begin() as conn:
        conn.execute(insert(USERS), users)
        if prefs:
            conn.execute(insert(PREFERENCES), prefs)
        conn.execute(insert(REMINDERS), reminders)
    return len(reminders)


def one_each(count: int, *, now: datetime, first_id: int) -> list[Person]:
    """`count` users with exactly one reminder each, of the realistic kinds, days and zones.

    Each rule's time of day is moved to 12 hours from `now` in the user's zone, so that no
    regular occurrence falls inside a benchmark that sets `next_due_at` by hand (one would
    collapse with it into one message and leave a 'missed' occurrence).
    """
    found: list[Person] = []
    for person in people(count * 3, seed=7, today=now.date(), quiet_share=0.0, first_id=first_id):
        kind, label, rule, _paused = person.reminders[0]
        local = (now + timedelta(hours=12)).astimezone(zone_from_key(person.timezone or "UTC"))
        away = Rule((time(local.hour, local.minute),), Rule.from_text(rule).days)
        found.append(
            Person(
                person.user_id,
                person.language_code,
                person.timezone,
                None,
                ((kind, label, away.to_text(), False),),
            )
        )
        if len(found) == count:
            return found
    raise BenchError("not enough people")


# --- scratch databases ----------------------------------------------------------------------------


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """Create an empty PostgreSQL database for one run and drop it afterwards."""
    import psycopg

    name = f"miliabot_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL is unreachable at {POSTGRES_URL}: {exc}") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="miliabot-bench-") as folder:
        yield Path(folder)


# --- the stand-in in its own process ------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One sendMessage call the stand-in received."""

    chat_id: int
    at: float  # wall-clock arrival, time.time()
    status: int | None


class StandInProcess:
    """Talks to `bench.standin_server` running in a child process."""

    def __init__(self, process: asyncio.subprocess.Process, api_root: str) -> None:
        self.process = process
        self.api_root = api_root

    async def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{command}\n".encode())
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise BenchError(f"the stand-in process died (exit {self.process.returncode})")
        return line.decode().strip()

    async def count(self) -> tuple[int, int]:
        """(sendMessage calls answered 200, 429s the stand-in gave) so far."""
        reply = json.loads(await self._ask("count"))
        return int(reply["sent"]), int(reply["rate_limited"])

    async def sends(self) -> list[Send]:
        """Every sendMessage call so far, in arrival order."""
        with tempfile.NamedTemporaryFile(suffix=".json") as dump:
            if await self._ask(f"dump {dump.name}") != "ok":
                raise BenchError("the stand-in could not dump its calls")
            rows = json.loads(await asyncio.to_thread(Path(dump.name).read_text))
        return [Send(int(chat), float(at), status) for chat, at, status in rows]


@asynccontextmanager
async def standin_process(
    *, global_rate: float | None = None, chat_rate: float | None = None
) -> AsyncIterator[StandInProcess]:
    """Start the stand-in in a child process (rates None: its limits off); stop it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.standin_server",
        "--global-rate",
        "off" if global_rate is None else str(global_rate),
        "--chat-rate",
        "off" if chat_rate is None else str(chat_rate),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if not line.startswith(b"http"):
            raise BenchError(f"the stand-in process did not start: {line!r}")
        yield StandInProcess(process, line.decode().strip())
    finally:
        if process.returncode is None:
            process.stdin.write(b"quit\n")
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


def occurrence_statuses(engine: Engine) -> dict[str, int]:
    """How many occurrences the database holds in each status."""
    occurrences: Table = Occurrence.__table__  # type: ignore[attr-defined]
    query = select(occurrences.c.status, func.count()).group_by(occurrences.c.status)
    with engine.connect() as conn:
        return {str(status): int(n) for status, n in conn.execute(query)}


def exactly_once(sends: Sequence[Send], chat_ids: Sequence[int]) -> dict[int, Send]:
    """Each chat's one accepted message; raise unless each got exactly one and nobody else any."""
    wanted = set(chat_ids)
    accepted: dict[int, list[Send]] = {}
    refused = 0
    for send in sends:
        if send.chat_id not in wanted:
            continue
        if send.status == 200:
            accepted.setdefault(send.chat_id, []).append(send)
        else:
            refused += 1
    missing = len(wanted) - len(accepted)
    twice = sum(1 for found in accepted.values() if len(found) > 1)
    if missing or twice:
        raise BenchError(
            f"of {len(wanted)} chats, {missing} got nothing and {twice} got more than one "
            f"message ({refused} sends refused)"
        )
    return {chat: found[0] for chat, found in accepted.items()}
