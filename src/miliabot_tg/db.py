"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, create_engine

from miliabot_tg.paths import bundled_dir

T = TypeVar("T")

# An execution option: transactions on an engine carrying it only read. On SQLite they
# begin DEFERRED, so they never wait for the write lock a dispatcher cycle holds.
READ_ONLY: Final = "miliabot_read_only"
# An execution option: lift the statement timeout (schema migrations on a large table).
NO_STATEMENT_TIMEOUT: Final = "miliabot_no_statement_timeout"

# PostgreSQL is a network service: a server or network that stops answering must turn
# into an error within seconds, never a thread stuck for the kernel's 2-hour defaults.
# Any of these set in the database URL (libpq parameters) wins over the default here.
POSTGRES_CONNECT_ARGS: Final[dict[str, str]] = {
    "connect_timeout": "5",  # seconds for the whole connection start-up, auth included
    # Probe an idle connection after 10 s, every 5 s, and give up after 3 unanswered.
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    # Data sent but not acknowledged for this long (milliseconds) fails the connection.
    "tcp_user_timeout": "15000",
}
# Server-side limits: no statement runs longer, and a transaction left open and idle
# (a client that vanished mid-transaction) is ended, so its row locks are released.
STATEMENT_TIMEOUT: Final = "10s"
IDLE_IN_TRANSACTION_TIMEOUT: Final = "30s"
# How long a caller waits for a free connection from the pool before failing.
POOL_TIMEOUT: Final = 10.0


class SchemaOutOfDateError(Exception):
    """The database schema is not at the latest migration."""


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres URLs (psycopg2 is not installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def postgres_connect_args(url: URL) -> dict[str, str]:
    """The timeouts and keepalives above, except those the URL sets itself."""
    args = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in url.query}
    # Later -c options win, so a URL's own `options` can override these two.
    own = url.query.get("options", "")
    ours = (
        f"-c statement_timeout={STATEMENT_TIMEOUT} "
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}"
    )
    args["options"] = f"{ours} {own}".strip() if isinstance(own, str) else ours
    return args


def make_engine(url: str) -> Engine:
    """Create an engine; on PostgreSQL with timeouts, on SQLite with safe pragmas."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=POOL_TIMEOUT,
            connect_args=postgres_connect_args(parsed),
        )

        @event.listens_for(engine, "begin")
        def _postgres_begin(connection: Connection) -> None:
            if connection.get_execution_options().get(NO_STATEMENT_TIMEOUT):
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")

        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see _begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer; foreign keys are off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # A plain read: WAL gives it a snapshot without taking or awaiting any lock.
            connection.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock up front, so a transaction that reads and then
        # writes (claiming due work) never fails half-way because another writer slipped in.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def new_session(engine: Engine) -> Session:
    """Open a session whose objects stay readable after commit."""
    return Session(engine, expire_on_commit=False)


def reading(engine: Engine) -> Engine:
    """The same engine and pool, for transactions that only read (see READ_ONLY)."""
    return engine.execution_options(**{READ_ONLY: True})


async def db_read(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run `work` in a session that only reads, on a worker thread, off the event loop."""
    return await asyncio.to_thread(_in_session, reading(engine), work)


async def db_write(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run `work` in a session that may write, on a worker thread, off the event loop."""
    return await asyncio.to_thread(_in_session, engine, work)


def _in_session(engine: Engine, work: Callable[[Session], T]) -> T:
    with new_session(engine) as session:
        return work(session)


def alembic_config(engine: Engine) -> Config:
    """Build Alembic's configuration in code, pointing at the shipped migrations."""
    config = Config()
    config.set_main_option("script_location", str(bundled_dir("migrations")))
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str | None:
    """Return the newest migration's revision id."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest migration."""
    # A migration may rewrite a large table: the bot's statement timeout must not cut it.
    unlimited = engine.execution_options(**{NO_STATEMENT_TIMEOUT: True})
    command.upgrade(alembic_config(unlimited), "head")


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Migrate when allowed, otherwise refuse to run on an out-of-date schema."""
    if current_revision(engine) == head_revision(engine):
        return
    if auto_migrate:
        migrate(engine)
        return
    raise SchemaOutOfDateError(
        f"the database schema is at {current_revision(engine) or 'nothing'}, "
        f"not {head_revision(engine)}: run `miliabot migrate` first."
    )
