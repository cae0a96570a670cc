"""`miliabot broadcast …` and `miliabot stats`: operators' work from a terminal.

The command line only records in the database. A broadcast sent from here is started
exactly as one sent from Telegram (every recipient recorded first), and the running bots
notice it within their poll interval and send it at their pace; no bot running, nothing
goes out until one starts.

Exit codes (also in the README):

* 0: done (for ``send``: recorded and started; ``--dry-run``: checked, nothing recorded);
* 1: not confirmed: the answer was no, or there is no terminal to ask on and no ``--yes``;
* 2: bad input: the text is not Telegram HTML or too long, an unknown snippet, audience
  or time, a file that cannot be read, a setting or an out-of-date schema;
* 3: no broadcast with that id;
* 4: the broadcast is in the wrong state (pausing a finished one, resuming a running one);
* 69: the database cannot be reached (as for every ``miliabot`` command);
* 130: interrupted while asking (Ctrl-C). Ctrl-C while following a status exits 0: the
  broadcast carries on without us watching.
"""

import argparse
import difflib
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

from sqlalchemy import Engine

from miliabot_tg import broadcasts as store
from miliabot_tg import publishing, stats
from miliabot_tg.broadcasts import Audience, BroadcastError, Progress
from miliabot_tg.config import Settings, load_settings
from miliabot_tg.content import Guide, load_guide
from miliabot_tg.db import ensure_schema, make_engine, reading
from miliabot_tg.models import BroadcastStatus, utcnow
from miliabot_tg.telegram_html import EntityParseError, parse_html, utf16_len

EXIT_OK: Final = 0
EXIT_NOT_CONFIRMED: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_WRONG_STATE: Final = 4

CLI_OPERATOR: Final = 0  # `created_by` of broadcasts recorded from the command line
MAX_TEXT: Final = 4096  # Telegram's limit on a message's text, after entities are parsed
LIST_LIMIT: Final = 20
BAR_WIDTH: Final = 30
# How often `status --follow` looks again; the bots record outcomes as they go.
FOLLOW_EVERY: Final = 1.0
FINISHED: Final = (BroadcastStatus.DONE.value, BroadcastStatus.CANCELLED.value)


class CliError(Exception):
    """A refusal with its exit code; the message is printed as it is."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


Handler = Callable[[argparse.Namespace], int]


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `broadcast …` and `stats` to the `miliabot` command's subparsers."""
    broadcast = commands.add_parser(
        "broadcast",
        help="record a broadcast for the running bots to send, and follow it",
        description="Record broadcasts in the database; the running bots send them.",
        epilog=(
            "exit codes: 0 ok, 1 not confirmed, 2 bad input, 3 no such broadcast, "
            "4 wrong state, 69 database unreachable"
        ),
    )
    actions = broadcast.add_subparsers(required=True, metavar="ACTION")

    send = actions.add_parser("send", help="check, confirm, record and start a broadcast")
    body = send.add_mutually_exclusive_group(required=True)
    body.add_argument("--text-file", type=Path, help="a UTF-8 file of Telegram HTML")
    body.add_argument("--snippet", metavar="ID", help="a guide snippet, with a button to open it")
    send.add_argument(
        "--audience",
        default="all",
        help="all (default), kind:sunscreen|moisturize|exfoliate|custom, or active:DAYS",
    )
    send.add_argument("--at", metavar="HH:MM", help="send at this hour in each user's own time")
    send.add_argument("--dry-run", action="store_true", help="check and count; record nothing")
    send.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    send.set_defaults(handler=_guarded(_send))

    listing = actions.add_parser("list", help="the latest broadcasts")
    listing.set_defaults(handler=_guarded(_list))

    status = actions.add_parser("status", help="how a broadcast is going")
    status.add_argument("id", type=int)
    status.add_argument("--follow", action="store_true", help="a progress bar until it finishes")
    status.set_defaults(handler=_guarded(_status))

    for name, verb in (("pause", "pause"), ("resume", "resume"), ("cancel", "cancel")):
        change = actions.add_parser(name, help=f"{verb} a broadcast")
        change.add_argument("id", type=int)
        change.set_defaults(handler=_guarded(_change), action=name)

    stats_cmd = commands.add_parser("stats", help="users, reminders and broadcasts at a glance")
    stats_cmd.set_defaults(handler=_stats)


def _guarded(handler: Handler) -> Handler:
    """Print a refusal on stderr and return its code, instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CliError as exc:
            print(f"miliabot: {exc}", file=sys.stderr)
            return exc.code

    return run


def _engine(settings: Settings) -> Engine:
    """The bots' database, refused unless the schema is current (never migrated from here)."""
    engine = make_engine(settings.database_url)
    ensure_schema(engine, auto_migrate=False)
    return engine


# --- send --------------------------------------------------------------------------------------


def check_text(text: str) -> str:
    """The text as sent, or CliError saying why Telegram would refuse it."""
    text = text.strip()
    if not text:
        raise CliError(EXIT_BAD_INPUT, "the text file is empty.")
    try:
        plain, _entities = parse_html(text)
    except EntityParseError as exc:
        raise CliError(
            EXIT_BAD_INPUT,
            f"Telegram would refuse this text: {exc}. Escape a literal < as &lt; and & as &amp;.",
        ) from None
    if not plain.strip():
        raise CliError(EXIT_BAD_INPUT, "the text has no visible characters.")
    if utf16_len(plain) > MAX_TEXT:
        raise CliError(
            EXIT_BAD_INPUT,
            f"the text is {utf16_len(plain)} characters long; Telegram allows {MAX_TEXT}.",
        )
    return text


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(EXIT_BAD_INPUT, f"{path} is not UTF-8 text.") from None
    except OSError as exc:
        raise CliError(EXIT_BAD_INPUT, f"cannot read {path}: {exc.strerror}.") from None


def served_guide(settings: Settings, engine: Engine) -> tuple[int | None, Guide]:
    """What the bots serve: the latest published version, else the content folder."""
    published = publishing.latest_guide(engine)
    return published if published is not None else (None, load_guide(settings.content_dir))


def _snippet_title(guide: Guide, snippet_id: str) -> str:
    """The snippet's title in the guide users are served, or CliError naming close ids."""
    snippet = guide.get(snippet_id)
    if snippet is not None:
        return snippet.title
    ids = [s.id for s in guide.snippets]
    close = difflib.get_close_matches(snippet_id, ids, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else f" Known ids: {', '.join(ids)}."
    raise CliError(EXIT_BAD_INPUT, f"there is no snippet {snippet_id!r} in the guide.{hint}")


def _preview(text: str) -> str:
    """The first line of a text as users will read it, shortened."""
    plain = parse_html(text)[0]
    line = " ".join(plain.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


def _send(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        audience = Audience.parse(args.audience)
        local_time = store.parse_local_time(args.at) if args.at is not None else None
    except BroadcastError as exc:
        raise CliError(EXIT_BAD_INPUT, str(exc)) from None
    text: str | None = None
    if args.text_file is not None:
        text = check_text(_read_text(args.text_file))
        what = f'text, {utf16_len(parse_html(text)[0])} characters: "{_preview(text)}"'
    engine = _engine(settings)
    if args.snippet is not None:
        title = _snippet_title(served_guide(settings, engine)[1], args.snippet)
        what = f'guide snippet {args.snippet} "{title}"'
    now = utcnow()
    with reading(engine).connect() as conn:
        count = store.count_audience(conn, audience, now)
    timing = (
        f"at {local_time} in each user's own time" if local_time else "now"
    ) + " (quiet hours respected)"
    print("Broadcast from the command line")
    print(f"  body:       {what}")
    print(f"  audience:   {audience.describe()} ({audience.to_text()})")
    print(f"  timing:     {timing}")
    print(f"  recipients: {count} right now")
    if args.dry_run:
        print("Dry run: nothing was recorded.")
        return EXIT_OK
    if not args.yes:
        _confirm(count)
    with engine.begin() as conn:
        broadcast_id = store.create_draft(
            conn,
            created_by=CLI_OPERATOR,
            now=now,
            text=text,
            snippet_id=args.snippet,
            audience=audience,
            local_time=local_time,
        )
    recorded = store.start(engine, broadcast_id, utcnow(), settings.default_tz)
    print(
        f"Broadcast #{broadcast_id} is recorded for {recorded} recipient(s); "
        "the running bots send it within seconds."
    )
    print(f"Follow it with: miliabot broadcast status {broadcast_id} --follow")
    with reading(engine).connect() as conn:
        if not stats.bots_running(conn, utcnow()):
            print(
                "miliabot: note: no bot has been running on this database lately; "
                "it goes out once one starts (miliabot run).",
                file=sys.stderr,
            )
    return EXIT_OK


def _confirm(count: int, stdin: TextIO | None = None) -> None:
    """Ask on the terminal; CliError unless the answer is yes."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        raise CliError(
            EXIT_NOT_CONFIRMED,
            "not sent: there is no terminal to confirm on. Check with --dry-run, then add --yes.",
        )
    print(f"Send it to {count} user(s)? [y/N] ", end="", flush=True)
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise CliError(EXIT_NOT_CONFIRMED, "not sent; nothing was recorded.")


# --- list, status, pause, resume, cancel ------------------------------------------------------


def _list(_args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    with reading(engine).connect() as conn:
        rows = store.recent(conn, LIST_LIMIT)
        progresses = [store.progress(conn, row.id) for row in rows]
    if not rows:
        print("No broadcasts yet.")
        return EXIT_OK
    print(f"{'ID':>5}  {'STATUS':<9}  {'CREATED (UTC)':<16}  {'AUDIENCE':<16}  {'SENT':>11}  BODY")
    for row, progress in zip(rows, progresses, strict=True):
        sent = f"{progress.sent if progress else 0}/{row.recipients}"
        print(
            f"{row.id:>5}  {row.status:<9}  {row.created_at:%Y-%m-%d %H:%M}  "
            f"{row.audience:<16}  {sent:>11}  {_body(row)}"
        )
    return EXIT_OK


def _body(row: Any) -> str:
    if row.body == "snippet":
        return f"snippet {row.snippet_id}"
    if row.body == "copy":
        return "a copied message"
    try:
        return _preview(row.text or "")
    except EntityParseError:
        return "(text)"


def _progress(engine: Engine, broadcast_id: int) -> Progress:
    with reading(engine).connect() as conn:
        progress = store.progress(conn, broadcast_id)
    if progress is None:
        raise CliError(EXIT_NOT_FOUND, f"there is no broadcast {broadcast_id}.")
    return progress


def progress_line(progress: Progress, now: datetime) -> str:
    """One line: a bar, the share done, the counts and the time left."""
    total = progress.recipients
    done = total - progress.left
    share = done / total if total else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [
        f"#{progress.broadcast_id} {progress.status:<9}",
        f"[{bar}] {share:4.0%}",
        f"sent {progress.sent}/{total}",
        f"blocked {progress.blocked}",
        f"failed {progress.failed}",
    ]
    if progress.skipped:
        parts.append(f"skipped {progress.skipped}")
    parts.append(f"left {progress.left}")
    eta = progress.seconds_left(now) if progress.status == "running" else None
    if eta is not None:
        parts.append(f"~{int(eta)} s to go")
    return "  ".join(parts)


def _status(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    progress = _progress(engine, args.id)
    if not args.follow:
        print(progress_line(progress, utcnow()))
        return EXIT_OK
    return follow(engine, progress, sys.stdout)


def follow(engine: Engine, progress: Progress, out: TextIO) -> int:
    """Redraw the progress line until the broadcast is done or cancelled; Ctrl-C stops."""
    live = out.isatty()
    shown = ""
    try:
        while True:
            line = progress_line(progress, utcnow())
            if live:  # redraw in place; padding wipes the end of a longer line
                print(f"\r{line:<{len(shown)}}", end="", file=out, flush=True)
            elif line != shown:
                print(line, file=out, flush=True)
            shown = line
            if progress.status in FINISHED:
                break
            _sleep(FOLLOW_EVERY)
            progress = _progress(engine, progress.broadcast_id)
    except KeyboardInterrupt:
        print(
            f"\nStopped watching; broadcast #{progress.broadcast_id} carries on.",
            file=out,
        )
        return EXIT_OK
    if live:
        print(file=out)
    return EXIT_OK


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


_ALLOWED: Final = {
    "pause": "only a running broadcast can be paused",
    "resume": "only a paused broadcast can be resumed",
    "cancel": "only a draft, running or paused broadcast can be cancelled",
}
_DONE: Final = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def _change(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    with engine.begin() as conn:
        row = store.get(conn, args.id)
        if row is None:
            raise CliError(EXIT_NOT_FOUND, f"there is no broadcast {args.id}.")
        if args.action == "pause":
            changed = store.pause(conn, args.id)
        elif args.action == "resume":
            changed = store.resume(conn, args.id)
        else:
            changed = store.cancel(conn, args.id, utcnow())
    if not changed:
        raise CliError(
            EXIT_WRONG_STATE, f"broadcast #{args.id} is {row.status}: {_ALLOWED[args.action]}."
        )
    print(f"Broadcast #{args.id} is {_DONE[args.action]}.")
    return EXIT_OK


# --- stats ------------------------------------------------------------------------------------


def _stats(_args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = _engine(settings)
    number, guide = served_guide(settings, engine)
    version = stats.version_label(number, guide)
    with reading(engine).connect() as conn:
        found = stats.collect(conn, utcnow(), content_version=version)
    print(stats.render(found))
    return EXIT_OK
