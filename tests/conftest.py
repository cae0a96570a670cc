"""Shared fixtures: real SQLite files and a real PostgreSQL server, fresh for each test."""

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from miliabot_tg.db import make_engine, migrate
from tests.robustness.results import ROWS, lines

# Nothing in the tests reaches the internet: settings read from the environment (and
# bots started as subprocesses) send UV forecast requests to a closed loopback port.
os.environ.setdefault("MILIABOT_UV_API_URL", "http://127.0.0.1:9")

POSTGRES_URL = os.environ.get(
    "MILIABOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        # Failing, never skipping: a green run must mean PostgreSQL was tested.
        pytest.fail(
            f"PostgreSQL is unreachable at {POSTGRES_URL} ({exc}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or point MILIABOT_TEST_POSTGRES_URL at a server.",
            pytrace=False,
        )


# `make test` runs the suite on several pytest-xdist workers. The robustness figures are
# recorded in each worker's memory; hand them to the controller, whose summary prints them.
_ROWS_KEY = "robustness_rows"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # this process is an xdist worker
        workeroutput[_ROWS_KEY] = json.dumps(ROWS)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    rows = getattr(node, "workeroutput", {}).get(_ROWS_KEY)
    if rows:
        ROWS.extend(json.loads(rows))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # An xdist controller collects nothing, so it loads tests/robustness/conftest.py (which
    # prints the figures) only when the command line names that folder: print them here.
    if not ROWS or any(
        str(getattr(plugin, "__file__", "")).endswith("robustness/conftest.py")
        for plugin in config.pluginmanager.get_plugins()
    ):
        return
    terminalreporter.section("robustness figures")
    for line in lines(ROWS):
        terminalreporter.write_line(line)


# The files whose tests take longest (each 25 s to 150 s on a loaded 2-core machine), longest
# first. `make test` hands tests to its workers in collection order, two at a time, so these
# start at once instead of one of them beginning near the end and running on alone.
SLOW_FILES = (
    "tests/robustness/test_crashes.py",
    "tests/test_cluster.py",
    "tests/robustness/test_fuzz.py",
    "tests/robustness/test_database.py",
    "tests/robustness/test_faults.py",
    "tests/test_broadcast_crash.py",
    "tests/test_bench_smoke.py",
    "tests/test_lifecycle.py",
    "tests/test_packaging.py",
    "tests/test_processes.py",
    "tests/test_config_and_cli.py",
    "tests/test_election.py",
    "tests/test_logs.py",
    "tests/test_dispatch_hardening.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FILES.index(path) if path in SLOW_FILES else len(SLOW_FILES)

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Create an empty PostgreSQL database for one test and drop it afterwards."""
    name = f"miliabot_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """Return the URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'bot.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run the test once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on each database."""
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()
