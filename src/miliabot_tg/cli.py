"""The `miliabot` command: run, migrate, console, content validate|publish|history|rollback."""

import argparse
import asyncio
import getpass
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from telegram.error import InvalidToken

from miliabot_tg import publishing
from miliabot_tg.config import ConfigError, Settings, load_settings
from miliabot_tg.content import ContentError, load_guide, validate
from miliabot_tg.db import SchemaOutOfDateError, ensure_schema, make_engine, migrate
from miliabot_tg.logs import setup_logging
from miliabot_tg.models import utcnow

log = logging.getLogger("miliabot")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits' EX_UNAVAILABLE: a service we need is not there
EXIT_CONFIG = 78  # sysexits' EX_CONFIG: Telegram rejected the token; retrying cannot help


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the chosen subcommand."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except ConfigError as exc:
        print(f"miliabot: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except ContentError as exc:
        print("miliabot: the guide content has problems; fix them first:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        code = EXIT_USAGE
    except SchemaOutOfDateError as exc:
        print(f"miliabot: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except InvalidToken:
        print(
            "miliabot: Telegram rejected MILIABOT_TOKEN; copy it again from @BotFather.",
            file=sys.stderr,
        )
        code = EXIT_CONFIG
    except OperationalError as exc:
        # The driver's first line says what failed (refused, bad password, no database).
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(
            f"miliabot: cannot use the database in MILIABOT_DATABASE_URL: {reason}", file=sys.stderr
        )
        code = EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miliabot", description="A Telegram bot for skin care around milia."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the bot (needs MILIABOT_TOKEN)")
    run.set_defaults(handler=_run)

    migrate_cmd = commands.add_parser("migrate", help="upgrade the database schema")
    migrate_cmd.set_defaults(handler=_migrate)

    console = commands.add_parser(
        "console", help="chat with the real bot in this terminal, no token or network needed"
    )
    console.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL for the console's own database (default: data/console.sqlite3)",
    )
    console.set_defaults(handler=_console)

    # `broadcast send|list|status|pause|resume|cancel` and `stats`: see broadcast_cli.py.
    from miliabot_tg.broadcast_cli import add_commands as add_operator_commands

    add_operator_commands(commands)

    # `webhook set|delete|info`: see webhook_cli.py.
    from miliabot_tg.webhook_cli import add_commands as add_webhook_commands

    add_webhook_commands(commands)

    content = commands.add_parser("content", help="work with the guide content")
    content_commands = content.add_subparsers(required=True, metavar="ACTION")
    check = content_commands.add_parser("validate", help="check every content file")
    check.add_argument("folder", nargs="?", type=Path, help="default: MILIABOT_CONTENT_DIR")
    check.set_defaults(handler=_validate)
    publish = content_commands.add_parser(
        "publish", help="publish the folder as a new version, if it differs from the latest"
    )
    publish.add_argument("folder", nargs="?", type=Path, help="default: MILIABOT_CONTENT_DIR")
    publish.add_argument("--by", default=None, help="who publishes (default: your user name)")
    publish.set_defaults(handler=_publish)
    history = content_commands.add_parser("history", help="list published versions")
    history.add_argument("--limit", type=int, default=20, help="newest first (default: 20)")
    history.set_defaults(handler=_history)
    rollback = content_commands.add_parser(
        "rollback", help="republish an older version as a new one"
    )
    rollback.add_argument("version", type=int, help="the version number to bring back")
    rollback.add_argument("--by", default=None, help="who publishes (default: your user name)")
    rollback.set_defaults(handler=_rollback)
    return parser


def _secrets(settings: Settings, token: str | None) -> list[str]:
    """Return what must never be logged: the token and any database password."""
    secrets = [token] if token else []
    password = make_url(settings.database_url).password
    if password:
        secrets.append(str(password))
    return secrets


def _run(_args: argparse.Namespace) -> int:
    from miliabot_tg import lifecycle
    from miliabot_tg.app import build_application
    from miliabot_tg.handlers import Deps
    from miliabot_tg.web import make_server

    settings = load_settings()
    token = settings.token_value()
    setup_logging(secrets=_secrets(settings, token), json_lines=settings.log_format == "json")
    guide = load_guide(settings.content_dir)
    engine = make_engine(settings.database_url)
    # SQLite is one file beside one bot, so migrating is safe; a shared PostgreSQL
    # database is migrated on purpose by an operator, never by whichever bot starts first.
    ensure_schema(engine, auto_migrate=engine.dialect.name == "sqlite")
    publishing.publish_at_start(engine, settings.content_dir)
    deps = Deps(settings=settings, engine=engine, guide=guide, clock=utcnow)
    built = build_application(deps, token)
    web = make_server(settings, deps, built)  # health, readiness, metrics; the webhook
    log.info("starting: %d guide topics, database %s", len(guide.snippets), engine.dialect.name)
    # Waits for Telegram, runs until SIGTERM/SIGINT, stops within lifecycle.STOP_WITHIN.
    asyncio.run(lifecycle.run(built, web=web))
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    settings = load_settings()
    setup_logging(secrets=_secrets(settings, None), json_lines=settings.log_format == "json")
    migrate(make_engine(settings.database_url))
    print("miliabot: the database schema is up to date.")
    return 0


def _console(args: argparse.Namespace) -> int:
    from miliabot_tg.console import run_console

    settings = load_settings()
    return run_console(settings, database_url=args.database)


def _validate(args: argparse.Namespace) -> int:
    folder = args.folder or load_settings().content_dir
    problems = validate(folder)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {folder}", file=sys.stderr)
        return 1
    guide = load_guide(folder)
    print(
        f"{folder}: {len(guide.snippets)} topics and tips for {', '.join(sorted(guide.tips))}: OK"
    )
    return 0


def _content_engine() -> Engine:
    """The configured database, its schema checked as `miliabot run` checks it."""
    settings = load_settings()
    setup_logging(secrets=_secrets(settings, None), json_lines=settings.log_format == "json")
    engine = make_engine(settings.database_url)
    ensure_schema(engine, auto_migrate=engine.dialect.name == "sqlite")
    return engine


def _publisher(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        user = "someone"
    return f"{user}@{socket.gethostname()}"


def _publish(args: argparse.Namespace) -> int:
    folder = args.folder or load_settings().content_dir
    engine = _content_engine()
    result = publishing.publish(engine, folder, _publisher(args.by))
    version = result.version
    if result.created:
        print(f"{folder}: published as content version {version.number}")
        print(f"  {version.changes.summary()}")
    else:
        print(f"{folder}: already published as content version {version.number}; nothing to do.")
    engine.dispose()
    return 0


def _history(args: argparse.Namespace) -> int:
    engine = _content_engine()
    versions = publishing.history(engine, limit=max(args.limit, 1))
    engine.dispose()
    if not versions:
        print("No content version is published yet: run `miliabot content publish`.")
        return 0
    for version in versions:
        when = version.published_at.strftime("%Y-%m-%d %H:%M UTC")
        again = version.changes.rollback_of
        note = f" (rollback to version {again})" if again is not None else ""
        print(f"version {version.number}  {when}  by {version.published_by}{note}")
        print(f"  {version.changes.summary()}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    engine = _content_engine()
    try:
        result = publishing.rollback(engine, args.version, _publisher(args.by))
    except publishing.UnknownVersionError:
        print(
            f"miliabot: there is no content version {args.version}; "
            "`miliabot content history` lists them.",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    version = result.version
    if result.created:
        print(f"content version {args.version} is live again, as version {version.number}")
        print(f"  {version.changes.summary()}")
    else:
        print(f"content version {version.number} already has this content; nothing to do.")
    return 0
