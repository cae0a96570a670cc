"""Engines, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from miliabot_tg.paths import bundled_dir


class SchemaOutOfDateError(Exception):
    """The database schema is not at the latest migration."""


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres URLs (psycopg2 is not installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    """Create an engine; on SQLite, make the file's folder and set safe pragmas."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
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
        # IMMEDIATE takes the write lock up front, so a transaction that reads and then
        # writes (claiming due work) never fails half-way because another writer slipped in.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def new_session(engine: Engine) -> Session:
    """Open a session whose objects stay readable after commit."""
    return Session(engine, expire_on_commit=False)


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
    command.upgrade(alembic_config(engine), "head")


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
