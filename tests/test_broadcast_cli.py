"""`miliabot broadcast …`, run in-process on a SQLite file and on PostgreSQL."""

import asyncio
import io
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from miliabot_tg import broadcast_cli, cli, repo
from miliabot_tg import broadcasts as store
from miliabot_tg.broadcasts import BROADCASTS, DELIVERIES
from miliabot_tg.db import make_engine, migrate, new_session
from miliabot_tg.models import utcnow
from miliabot_tg.schedule import parse_remind
from miliabot_tg.stats import HEARTBEATS
from tests.harness import running_bot


class Terminal(io.StringIO):
    """Typed answers on a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The command line's settings pointing at a migrated database; its engine for checks."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("MILIABOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MILIABOT_DATABASE_URL", database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal unless a test says so
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def miliabot(*args: str) -> int:
    """Run the command in this process; return its exit code."""
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    code = exited.value.code
    assert isinstance(code, int)
    return code


def _user(engine: Engine, user_id: int, reminder: str | None = None) -> None:
    now = utcnow()
    with new_session(engine) as session:
        repo.touch_user(
            session=session, user_id=user_id, first_name="Ann", language_code="en", now=now
        )
        if reminder is not None:
            spec = parse_remind(reminder, today=now.date())
            repo.add_reminder(
                session=session, user_id=user_id, spec=spec, now=now, default_key="UTC"
            )


def _broadcasts(engine: Engine) -> list[tuple[int, str, str, int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(BROADCASTS).order_by(BROADCASTS.c.id))
        return [(r.id, r.status, r.audience, r.created_by, r.text) for r in rows]


def _recipients(engine: Engine, broadcast_id: int) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(DELIVERIES.c.user_id, DELIVERIES.c.status).where(
                DELIVERIES.c.broadcast_id == broadcast_id
            )
        )
        return {r.user_id: r.status for r in rows}


def _text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "news.html"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_send_with_yes_records_every_recipient_and_starts_it(
    env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user(env, 11, "sunscreen 08:00 daily")
    _user(env, 12, "moisturize 08:00 daily")
    _user(env, 13, "sunscreen 09:00 daily")
    news = _text(tmp_path, "New in the guide: <b>sun protection</b> &amp; more")
    code = miliabot(
        "broadcast", "send", "--text-file", news, "--audience", "kind:sunscreen", "--yes"
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "recipients: 2 right now" in out
    assert "no bot has been running on this database lately" in err
    assert "Broadcast #1 is recorded for 2 recipient(s)" in out
    assert _broadcasts(env) == [
        (1, "running", "kind:sunscreen", 0, "New in the guide: <b>sun protection</b> &amp; more")
    ]
    assert _recipients(env, 1) == {11: "pending", 13: "pending"}


def test_a_dry_run_counts_and_records_nothing(
    env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for user_id in (21, 22, 23):
        _user(env, user_id)
    code = miliabot(
        "broadcast", "send", "--snippet", "sun-protection", "--at", "10:00", "--dry-run"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert 'guide snippet sun-protection "' in out
    assert "at 10:00 in each user's own time" in out
    assert "recipients: 3 right now" in out
    assert "Dry run: nothing was recorded." in out
    assert _broadcasts(env) == []


def test_the_operator_is_asked_first_and_no_means_nothing(
    env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _user(env, 31)
    news = _text(tmp_path, "Hello")
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert miliabot("broadcast", "send", "--text-file", news) == broadcast_cli.EXIT_NOT_CONFIRMED
    captured = capsys.readouterr()
    assert "Send it to 1 user(s)? [y/N]" in captured.out
    assert "not sent; nothing was recorded" in captured.err
    assert _broadcasts(env) == []

    with env.begin() as conn:  # a bot is running: no note about that
        conn.execute(HEARTBEATS.insert().values(instance="bot", seen_at=utcnow()))
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    assert miliabot("broadcast", "send", "--text-file", news) == 0
    assert "no bot has been running" not in capsys.readouterr().err
    assert [row[1] for row in _broadcasts(env)] == ["running"]


def test_without_a_terminal_it_refuses_unless_told_yes(
    env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user(env, 41)
    news = _text(tmp_path, "Hello")
    assert miliabot("broadcast", "send", "--text-file", news) == 1
    err = capsys.readouterr().err
    assert "no terminal to confirm on" in err and "--yes" in err
    assert _broadcasts(env) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--snippet", "sun-protectio"),
            "no snippet 'sun-protectio' in the guide. Did you mean sun-protection?",
        ),
        (
            ("--text-file", "TEXT:Hello <b>you"),
            "Telegram would refuse this text: Can't find end tag",
        ),
        (("--text-file", "TEXT:1 < 2"), "Telegram would refuse this text: Unsupported start tag"),
        (("--text-file", "TEXT:   \n"), "the text file is empty"),
        (("--text-file", "TEXT:" + "x" * 4097), "Telegram allows 4096"),
        (("--text-file", "missing.html"), "cannot read missing.html"),
        (("--snippet", "home-care", "--audience", "kind:water"), "The audience is all"),
        (("--snippet", "home-care", "--at", "25:00"), "A local time looks like 10:00"),
    ],
)
def test_bad_input_exits_2_and_records_nothing(
    env: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    _user(env, 51)
    if args[1].startswith("TEXT:"):
        args = (args[0], _text(tmp_path, args[1].removeprefix("TEXT:")), *args[2:])
    assert miliabot("broadcast", "send", *args, "--yes") == broadcast_cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert _broadcasts(env) == []


def test_list_and_status(env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert miliabot("broadcast", "list") == 0
    assert "No broadcasts yet." in capsys.readouterr().out
    for user_id in (61, 62):
        _user(env, user_id)
    miliabot("broadcast", "send", "--text-file", _text(tmp_path, "First <i>news</i>"), "--yes")
    miliabot("broadcast", "send", "--snippet", "home-care", "--yes")
    capsys.readouterr()

    assert miliabot("broadcast", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CREATED", "(UTC)", "AUDIENCE", "SENT", "BODY"]
    assert lines[1].split()[:2] == ["2", "running"] and lines[1].endswith("snippet home-care")
    assert lines[2].split()[:2] == ["1", "running"] and lines[2].endswith("First news")
    assert "0/2" in lines[1]

    assert miliabot("broadcast", "status", "1") == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("#1 running")
    assert "[------------------------------]   0%" in line
    assert "sent 0/2" in line and "left 2" in line

    assert miliabot("broadcast", "status", "99") == broadcast_cli.EXIT_NOT_FOUND
    assert "there is no broadcast 99" in capsys.readouterr().err


def test_pause_resume_cancel_and_their_wrong_states(
    env: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user(env, 71)
    miliabot("broadcast", "send", "--snippet", "home-care", "--yes")
    wrong, missing = broadcast_cli.EXIT_WRONG_STATE, broadcast_cli.EXIT_NOT_FOUND
    assert miliabot("broadcast", "resume", "1") == wrong
    assert "broadcast #1 is running: only a paused broadcast" in capsys.readouterr().err
    assert miliabot("broadcast", "pause", "1") == 0
    assert miliabot("broadcast", "pause", "1") == wrong
    assert _broadcasts(env)[0][1] == "paused"
    assert miliabot("broadcast", "resume", "1") == 0
    assert _broadcasts(env)[0][1] == "running"
    assert miliabot("broadcast", "cancel", "1") == 0
    assert miliabot("broadcast", "cancel", "1") == wrong
    assert miliabot("broadcast", "resume", "1") == wrong
    assert _recipients(env, 1) == {71: "skipped"}
    for action in ("pause", "resume", "cancel"):
        assert miliabot("broadcast", action, "42") == missing
    assert "Broadcast #1 is cancelled." in capsys.readouterr().out


def test_follow_draws_progress_until_the_bot_has_sent_it(
    env: Engine,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(broadcast_cli, "FOLLOW_EVERY", 0.05)
    for user_id in (81, 82, 83):
        _user(env, user_id)

    async def scenario() -> int:
        async with running_bot(tmp_path, database_url=database_url) as h:
            assert miliabot("broadcast", "send", "--snippet", "home-care", "--yes") == 0
            watching = asyncio.create_task(
                asyncio.to_thread(miliabot, "broadcast", "status", "1", "--follow")
            )
            await asyncio.sleep(0.2)
            assert not watching.done(), "it waits while nothing is sent"
            h.clock.now = utcnow() + timedelta(seconds=1)  # the CLI recorded in real time
            await h.broadcaster.run_round()
            code = await asyncio.wait_for(watching, 10)
            for user_id in (81, 82, 83):
                assert "From the milia guide" in h.standin.chat(user_id)[0].plain
            assert h.failures() == []
            return code

    assert asyncio.run(scenario()) == 0
    lines = capsys.readouterr().out.splitlines()
    # While nothing was sent it said so; the bot may then record all three before the
    # broadcast is marked done, so "running" lines in between can show any count.
    following = [line for line in lines if line.startswith("#1 ")]
    assert following[0].startswith("#1 running") and "sent 0/3" in following[0]
    assert lines[-1].startswith("#1 done")
    assert "[##############################] 100%" in lines[-1] and "sent 3/3" in lines[-1]


def test_ctrl_c_stops_following_and_the_broadcast_carries_on(
    env: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _user(env, 91)
    miliabot("broadcast", "send", "--snippet", "home-care", "--yes")

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(broadcast_cli, "_sleep", interrupted)
    assert miliabot("broadcast", "status", "1", "--follow") == 0
    captured = capsys.readouterr()
    assert "Stopped watching; broadcast #1 carries on." in captured.out
    assert "Traceback" not in captured.err
    assert _broadcasts(env)[0][1] == "running"


def test_an_unmigrated_or_unreachable_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MILIABOT_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert miliabot("broadcast", "list") == 2
    assert "run `miliabot migrate` first" in capsys.readouterr().err
    monkeypatch.setenv("MILIABOT_DATABASE_URL", "postgresql://postgres:pw@127.0.0.1:1/nowhere")
    assert miliabot("broadcast", "pause", "1") == 69
    err = capsys.readouterr().err
    assert err.startswith("miliabot: cannot use the database") and "pw" not in err


def test_a_broadcast_started_here_is_the_same_as_one_from_telegram(
    env: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's own start ran: a second start is refused, the count is recorded."""
    _user(env, 95)
    miliabot("broadcast", "send", "--snippet", "home-care", "--yes")
    with env.connect() as conn:
        row = store.get(conn, 1)
        recorded = conn.execute(select(func.count()).select_from(DELIVERIES)).scalar_one()
    assert row is not None and row.recipients == 1 == recorded and row.started_at is not None
    with pytest.raises(store.BroadcastError):
        store.start(env, 1, utcnow(), "UTC")


def test_on_a_terminal_the_progress_line_is_redrawn_in_place(env: Engine) -> None:
    _user(env, 97)
    miliabot("broadcast", "send", "--snippet", "home-care", "--yes")
    with env.begin() as conn:
        store.cancel(conn, 1, utcnow())
        progress = store.progress(conn, 1)
    assert progress is not None
    out = Terminal()
    assert broadcast_cli.follow(env, progress, out) == 0
    shown = out.getvalue()
    assert shown.startswith("\r#1 cancelled") and shown.endswith("\n")
    assert "skipped 1" in shown and "left 0" in shown
