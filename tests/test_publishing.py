"""Versioned content: publish, history, rollback, and running bots following the latest."""

import asyncio
import logging
import re
import shutil
import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import broadcasts as store
from miliabot_tg import cli, publishing
from miliabot_tg.content import ContentError, Guide, load_guide
from miliabot_tg.db import alembic_config, make_engine, migrate
from miliabot_tg.paths import bundled_dir
from miliabot_tg.publishing import (
    LIVE_GUIDE_JOB,
    POLL_SECONDS,
    LiveGuide,
    UnknownVersionError,
    folder_fingerprint,
    history,
    latest_guide,
    publish,
    publish_at_start,
    publish_if_new,
    rollback,
)
from miliabot_tg.texts import MAX_MESSAGE, unknown_command
from tests.harness import GUIDE, USER, Harness, running_bot
from tests.test_dispatch import _user

OPERATOR = 42
ALL_IDS = sorted(s.id for s in GUIDE.snippets)


# --- content folders ------------------------------------------------------------------------


def copy_content(tmp_path: Path, name: str = "content") -> Path:
    """A copy of the shipped guide to edit."""
    folder = tmp_path / name
    shutil.copytree(bundled_dir("content"), folder)
    return folder


def retitle(folder: Path, snippet_id: str, title: str) -> None:
    """Change a snippet's title in its file."""
    path = folder / f"{snippet_id}.md"
    source = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^title: .*$", f"title: {title}", source, count=1), "utf-8")


def remove_snippet(folder: Path, snippet_id: str) -> None:
    """Delete a snippet, pointing every link to it at what-milia-are instead."""
    (folder / f"{snippet_id}.md").unlink()
    for path in folder.glob("*.md"):
        source = path.read_text(encoding="utf-8")
        path.write_text(source.replace(snippet_id, "what-milia-are"), "utf-8")


def add_snippet(folder: Path, snippet_id: str, title: str) -> None:
    """Add a snippet: a copy of home-care under a new id and title."""
    source = (folder / "home-care.md").read_text(encoding="utf-8")
    source = re.sub(r"(?m)^id: .*$", f"id: {snippet_id}", source, count=1)
    source = re.sub(r"(?m)^title: .*$", f"title: {title}", source, count=1)
    (folder / f"{snippet_id}.md").write_text(source, "utf-8")


def versions_in(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM content_versions")).scalar_one())


# --- publishing -----------------------------------------------------------------------------


def test_publish_records_a_version_that_rebuilds_the_guide_exactly(
    engine: Engine, tmp_path: Path
) -> None:
    folder = copy_content(tmp_path)
    result = publish(engine, folder, "alice")
    assert result.created
    version = result.version
    assert (version.number, version.published_by) == (1, "alice")
    assert version.published_at.tzinfo is not None
    assert sorted(version.changes.added) == ALL_IDS
    assert version.changes.changed == version.changes.removed == ()
    assert version.changes.title("what-milia-are") == GUIDE.get("what-milia-are").title  # type: ignore[union-attr]
    assert version.fingerprint == folder_fingerprint(folder)
    latest = latest_guide(engine)
    assert latest is not None
    number, guide = latest
    assert number == 1
    assert guide == load_guide(folder)  # every snippet (html, plain, dates) and every tip


def test_publishing_the_same_content_again_records_nothing(engine: Engine, tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    first = publish(engine, folder, "alice")
    # The same content with Windows newlines, and a README edit, is still the same content.
    for path in [*folder.glob("*.md"), *folder.glob("tips/*.md")]:
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    (folder / "README.md").write_text("Notes for authors, not part of the guide.\n")
    again = publish(engine, folder, "bob")
    assert not again.created
    assert again.version == first.version
    assert versions_in(engine) == 1


def test_an_invalid_folder_is_refused_with_its_problems_and_the_old_version_serves(
    engine: Engine, tmp_path: Path
) -> None:
    folder = copy_content(tmp_path)
    publish(engine, folder, "alice")
    live = LiveGuide(GUIDE)
    live.follow(engine, None)
    assert live.refresh()
    (folder / "home-care.md").write_text("---\nid: home-care\n---\ntoo short\n")
    with pytest.raises(ContentError) as refused:
        publish(engine, folder, "alice")
    problems = [str(p) for p in refused.value.problems]
    assert any("home-care.md: missing field(s)" in p for p in problems)
    assert versions_in(engine) == 1
    assert not live.refresh()
    assert (live.version, live.current) == (1, load_guide(bundled_dir("content")))


def test_history_lists_versions_newest_first_with_what_changed(
    engine: Engine, tmp_path: Path
) -> None:
    folder = copy_content(tmp_path)
    publish(engine, folder, "alice")
    gone_title = GUIDE.get("eye-area-care").title  # type: ignore[union-attr]
    retitle(folder, "what-milia-are", "Milia, defined")
    remove_snippet(folder, "eye-area-care")
    add_snippet(folder, "milia-and-makeup", "Milia and make-up")
    second = publish(engine, folder, "bob")
    assert second.created
    changes = second.version.changes
    assert changes.added == ("milia-and-makeup",)
    assert "what-milia-are" in changes.changed
    assert changes.removed == ("eye-area-care",)
    assert changes.title("milia-and-makeup") == "Milia and make-up"
    assert changes.title("what-milia-are") == "Milia, defined"
    assert changes.title("eye-area-care") == gone_title  # from the version before
    versions = history(engine)
    assert [v.number for v in versions] == [2, 1]
    assert [v.published_by for v in versions] == ["bob", "alice"]
    assert versions[0].changes == changes
    assert history(engine, limit=1) == versions[:1]


def test_rollback_republishes_an_older_version_as_a_new_one(engine: Engine, tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    first = publish(engine, folder, "alice").version
    retitle(folder, "what-milia-are", "Milia, defined")
    publish(engine, folder, "alice")
    back = rollback(engine, 1, "carol")
    assert back.created
    assert back.version.number == 3
    assert back.version.fingerprint == first.fingerprint
    assert back.version.changes.rollback_of == 1
    assert back.version.changes.changed == ("what-milia-are",)
    latest = latest_guide(engine)
    assert latest is not None
    assert latest[1] == GUIDE
    # Rolling back to what is live already records nothing; an unknown number is refused.
    assert not rollback(engine, 1, "carol").created
    assert not rollback(engine, 3, "carol").created
    with pytest.raises(UnknownVersionError):
        rollback(engine, 99, "carol")
    assert versions_in(engine) == 3


def test_fingerprint_is_stable_and_sees_every_change(tmp_path: Path) -> None:
    one, two = copy_content(tmp_path, "one"), copy_content(tmp_path, "two")
    assert folder_fingerprint(one) == folder_fingerprint(two)
    assert folder_fingerprint(one) == folder_fingerprint(one)
    (two / "README.md").write_text("not content")
    (two / "notes.txt").write_text("not content either")
    assert folder_fingerprint(one) == folder_fingerprint(two)
    tip = two / "tips" / "sunscreen.md"
    tip.write_text(tip.read_text(encoding="utf-8").replace("- ", "-  ", 1), "utf-8")
    assert folder_fingerprint(one) != folder_fingerprint(two)
    # Moving text from one file to the next is a change too.
    sources = {"a.md": "xy", "b.md": "z"}
    assert publishing.fingerprint(sources) != publishing.fingerprint({"a.md": "x", "b.md": "yz"})


def test_start_up_publishes_new_content_but_never_undoes_a_rollback(
    engine: Engine, tmp_path: Path
) -> None:
    folder = copy_content(tmp_path)
    started = publish_at_start(engine, folder)
    assert started is not None and started.version.number == 1
    assert started.version.published_by.startswith("miliabot run on ")
    assert publish_at_start(engine, folder) is None  # a restart: nothing new
    retitle(folder, "what-milia-are", "Milia, defined")
    assert publish_at_start(engine, folder) is not None  # a release with new content
    rollback(engine, 1, "carol")
    assert publish_if_new(engine, folder, "miliabot run") is None  # seen as version 2
    assert [v.number for v in history(engine)] == [3, 2, 1]


def test_two_publishers_at_once_record_one_version(engine: Engine, tmp_path: Path) -> None:
    folder = copy_content(tmp_path)
    results: list[publishing.Published] = []
    barrier = threading.Barrier(4)

    def publish_one() -> None:
        barrier.wait()
        results.append(publish(engine, folder, "a deploy"))

    threads = [threading.Thread(target=publish_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert sum(r.created for r in results) == 1
    assert {r.version.number for r in results} == {1}
    assert versions_in(engine) == 1


# --- the live guide -----------------------------------------------------------------------


def test_the_swap_is_atomic_a_reader_never_gets_a_mixed_guide(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    folder = copy_content(tmp_path)
    for snippet_id in ALL_IDS:
        retitle(folder, snippet_id, f"A {snippet_id[:28]}")
    publish(engine, folder, "alice")
    for snippet_id in ALL_IDS:
        retitle(folder, snippet_id, f"B {snippet_id[:28]}")
    publish(engine, folder, "alice")
    live = LiveGuide(GUIDE)
    live.follow(engine, None)
    assert live.refresh()  # version 2: every title marked B
    stop, mixed, reads = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            guide = live.current  # one answer's worth of guide
            marks = {s.title[0] for s in guide.snippets}
            marks |= {guide.get(i).title[0] for i in ALL_IDS}  # type: ignore[union-attr]
            if len(marks) != 1:
                mixed.append(marks)
            reads[0] += 1

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(6):  # each swap rebuilds a whole guide and its search index
            rollback(engine, 1 + round_ % 2, "alice")
            assert live.refresh()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    engine.dispose()
    assert reads[0] > 0
    assert mixed == []


def test_a_failing_database_keeps_the_old_guide_serving_logged_once(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = copy_content(tmp_path)
    retitle(folder, "what-milia-are", "Milia, defined")
    publish(engine, folder, "alice")
    live = LiveGuide(GUIDE)
    live.follow(engine, None)
    assert live.refresh()
    served = live.current
    broken = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    live.follow(broken, None)
    with caplog.at_level(logging.INFO, logger="miliabot_tg.publishing"):
        assert not live.refresh()
        assert not live.refresh()
        assert live.current is served
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "still serving version 1" in warnings[0].getMessage()
        live.follow(engine, None)
        retitle(folder, "what-milia-are", "What milia are, again")
        publish(engine, folder, "alice")
        assert live.refresh()
    assert live.current.get("what-milia-are").title == "What milia are, again"  # type: ignore[union-attr]
    assert "reading content versions again" in caplog.text
    broken.dispose()


def test_a_stored_version_this_code_refuses_keeps_the_old_guide_serving(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = copy_content(tmp_path)
    publish(engine, folder, "alice")
    live = LiveGuide(GUIDE)
    live.follow(engine, None)
    assert live.refresh()
    retitle(folder, "what-milia-are", "Milia, defined")
    publish(engine, folder, "alice")
    with engine.begin() as conn:  # as if a newer release had published rules we lack
        conn.execute(
            text(
                "UPDATE content_files SET source = 'no front matter' WHERE path = 'home-care.md'"
                " AND version_id = (SELECT id FROM content_versions WHERE number = 2)"
            )
        )
    with caplog.at_level(logging.INFO, logger="miliabot_tg.publishing"):
        assert not live.refresh()
        assert not live.refresh()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "content version 2 is refused" in errors[0].getMessage()
    assert (live.version, live.current) == (1, GUIDE)
    retitle(folder, "what-milia-are", "Milia, defined again")
    publish(engine, folder, "alice")  # a good version after the bad one is taken
    assert live.refresh()
    assert live.version == 3


def test_with_nothing_published_the_folder_guide_serves(engine: Engine) -> None:
    live = LiveGuide(GUIDE)
    assert not live.refresh()  # not following any database: nothing to do
    live.follow(engine, None)
    assert not live.refresh()
    assert (live.version, live.current) == (None, GUIDE)


# --- a running bot --------------------------------------------------------------------------


async def drive_poller(bot: Harness) -> None:
    """Run the live guide's poll now, as its job would within seconds."""
    assert bot.app.job_queue is not None
    (job,) = bot.app.job_queue.get_jobs_by_name(LIVE_GUIDE_JOB)
    await job.run(bot.app)


def menu_titles(message: object) -> list[str]:
    buttons = message.buttons  # type: ignore[attr-defined]
    return [label for row in buttons for label, _ in row]


async def test_a_running_bot_serves_a_new_version_within_seconds(
    tmp_path: Path, database_url: str
) -> None:
    folder = copy_content(tmp_path)
    async with running_bot(tmp_path, database_url=database_url) as bot:
        await bot.say("/guide")
        assert "Milia, defined" not in menu_titles(await bot.press("🔍 Milia basics"))
        retitle(folder, "what-milia-are", "Milia, defined")
        remove_snippet(folder, "eye-area-care")
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        await drive_poller(bot)
        await bot.say("/guide")
        assert "Milia, defined" in menu_titles(await bot.press("🔍 Milia basics"))
        await bot.press("« All topics")
        # Moisturizing kept one topic of two: its section button now opens that topic.
        moisturizing = await bot.press("💧 Moisturizing")
        assert moisturizing.plain.startswith("Moisturizing the right way")
        (found,) = await bot.say("defined")
        assert "Milia, defined" in menu_titles(found)
        # Reminder tips come from the same guide.
        assert bot.dispatcher.guide.get("what-milia-are").title == "Milia, defined"  # type: ignore[union-attr]
        # And without driving it: the job's own schedule picks up the next one.
        assert bot.app.job_queue is not None
        (job,) = bot.app.job_queue.get_jobs_by_name(LIVE_GUIDE_JOB)
        assert job.job.trigger.interval.total_seconds() == POLL_SECONDS <= 5
        retitle(folder, "what-milia-are", "Milia, the basics")
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        for _ in range(100):
            if bot.dispatcher.guide.get("what-milia-are").title == "Milia, the basics":  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        await bot.say("/guide")
        assert "Milia, the basics" in menu_titles(await bot.press("🔍 Milia basics"))
        assert bot.failures() == []


async def test_content_shows_operators_the_live_version_and_what_changed(
    tmp_path: Path, database_url: str
) -> None:
    folder = copy_content(tmp_path)
    async with running_bot(
        tmp_path, database_url=database_url, admin_ids=frozenset({OPERATOR})
    ) as bot:
        (reply,) = await bot.say("/content", user_id=OPERATOR)
        assert "No content version is published yet" in reply.plain
        assert f"({len(GUIDE.snippets)} topics)" in reply.plain
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        gone = GUIDE.get("eye-area-care").title  # type: ignore[union-attr]
        retitle(folder, "what-milia-are", "Milia <defined> & co")
        remove_snippet(folder, "eye-area-care")
        add_snippet(folder, "milia-and-makeup", "Milia and make-up")
        await asyncio.to_thread(publish, bot.engine, folder, "<b>bob</b>")
        (reply,) = await bot.say("/content", user_id=OPERATOR)
        assert "Content version 2 is the latest" in reply.plain
        assert "still serves its content folder" in reply.plain
        await drive_poller(bot)
        (reply,) = await bot.say("/content", user_id=OPERATOR)
        assert reply.plain.startswith("📚 Content version 2 is live")
        assert "by <b>bob</b>" in reply.plain  # escaped, shown as typed
        added = reply.plain.split("Added (1)")[1]
        assert "Milia and make-up" in added
        changed = reply.plain.split("Changed (")[1]
        assert "Milia <defined> & co" in changed
        assert f"Removed (1)\n• {gone}" in reply.plain
        assert len(reply.text or "") <= MAX_MESSAGE
        rollback(bot.engine, 1, "carol")
        await drive_poller(bot)
        (reply,) = await bot.say("/content", user_id=OPERATOR)
        assert "Content version 3 is live" in reply.plain
        assert "the content of version 1" in reply.plain
        assert bot.failures() == []


async def test_content_and_whatsnew_are_unknown_commands_for_everyone_else(
    tmp_path: Path,
) -> None:
    folder = copy_content(tmp_path)
    async with running_bot(tmp_path, admin_ids=frozenset({OPERATOR})) as bot:
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        await drive_poller(bot)
        for command_ in ("/content", "/whatsnew"):
            (refused,) = await bot.say(command_)
            (unknown,) = await bot.say("/nosuchcommand")
            assert refused.plain == unknown.plain.replace("/nosuchcommand", command_)
            assert refused.text == unknown_command(command_)
        with bot.engine.connect() as conn:
            assert store.recent(conn) == []  # /whatsnew drafted nothing


async def test_whatsnew_drafts_an_announcement_with_a_button_for_each_new_topic(
    tmp_path: Path, database_url: str
) -> None:
    folder = copy_content(tmp_path)
    async with running_bot(
        tmp_path, database_url=database_url, admin_ids=frozenset({OPERATOR})
    ) as bot:
        (reply,) = await bot.say("/whatsnew", user_id=OPERATOR)
        assert "No content version is published yet" in reply.plain
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        await drive_poller(bot)
        reply, _note = await bot.say("/whatsnew", user_id=OPERATOR)  # version 1: all is new
        assert f"and {len(ALL_IDS) - 8} more in /guide" in reply.plain
        retitle(folder, "types-of-milia", "Milia <types> & kinds")
        add_snippet(folder, "milia-and-makeup", "Milia and make-up")
        await asyncio.to_thread(publish, bot.engine, folder, "alice")
        await drive_poller(bot)
        preview, note = await bot.say("/whatsnew", user_id=OPERATOR)
        assert preview.plain.splitlines() == [
            "📣 What's new in the milia guide",
            "",
            "✨ New: Milia and make-up",
            "✏️ Updated: Milia <types> & kinds",
            "",
            "Tap a topic to read it.",
        ]
        assert [label for row in preview.buttons for label, _ in row] == [
            "📖 Milia and make-up",
            "📖 Milia <types> & kinds",
            "🔕 No more announcements",
        ]
        found = re.search(r"Broadcast #(\d+) is a draft", note.plain)
        assert found is not None
        broadcast_id = int(found.group(1))
        with bot.engine.connect() as conn:
            row = store.get(conn, broadcast_id)
        assert row is not None
        assert (row.status, row.body, row.created_by) == ("draft", "snippets", OPERATOR)
        assert bot.standin.chat(USER) == []

        # Sent with the same controls as any draft, users get exactly the preview.
        _user(bot)
        await bot.press(bt.SEND, chat_id=OPERATOR)
        await bot.broadcaster.run_round()
        (sent,) = bot.standin.chat(USER)
        assert (sent.text, sent.reply_markup) == (preview.text, preview.reply_markup)
        opened = await bot.press("📖 Milia and make-up")
        assert opened.plain.startswith("Milia and make-up")
        assert bot.failures() == []


# --- the schema and the command line --------------------------------------------------------


def test_migration_0006_goes_down_and_up_again(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    publish(engine, copy_content(tmp_path), "alice")
    command.downgrade(alembic_config(engine), "0005")
    tables = set(inspect(engine).get_table_names())
    assert not {"content_versions", "content_files"} & tables
    assert "snippet_ids" not in {c["name"] for c in inspect(engine).get_columns("broadcasts")}
    migrate(engine)
    assert {"content_versions", "content_files"} <= set(inspect(engine).get_table_names())
    command.check(alembic_config(engine))
    assert publish(engine, copy_content(tmp_path, "again"), "alice").version.number == 1
    engine.dispose()


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        cli.main(list(args))
    return int(done.value.code or 0)


def test_content_commands_publish_list_and_roll_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "setup_logging", lambda **_: None)  # keep pytest's log capture
    folder = copy_content(tmp_path)
    monkeypatch.setenv("MILIABOT_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("MILIABOT_CONTENT_DIR", str(folder))

    assert run_cli("content", "history") == 0
    assert "No content version is published yet" in capsys.readouterr().out
    assert run_cli("content", "publish", "--by", "alice") == 0
    out = capsys.readouterr().out
    assert "published as content version 1" in out
    assert f"added: {', '.join(sorted(ALL_IDS))}" in out
    assert run_cli("content", "publish") == 0
    assert "already published as content version 1; nothing to do." in capsys.readouterr().out

    other = copy_content(tmp_path, "other")
    retitle(other, "what-milia-are", "Milia, defined")
    assert run_cli("content", "publish", str(other), "--by", "bob") == 0
    assert "version 2\n  changed: what-milia-are" in capsys.readouterr().out

    (other / "home-care.md").write_text("---\nid: home-care\n---\nshort\n")
    assert run_cli("content", "publish", str(other)) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "home-care.md: missing field(s)" in err

    assert run_cli("content", "rollback", "1", "--by", "carol") == 0
    assert "content version 1 is live again, as version 3" in capsys.readouterr().out
    assert run_cli("content", "rollback", "7") == 1
    assert "there is no content version 7" in capsys.readouterr().err

    assert run_cli("content", "history") == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line for line in lines if line.startswith("version ")]
    assert [h.split()[1] for h in heads] == ["3", "2", "1"]
    assert heads[0].endswith("by carol (rollback to version 1)")
    assert "by bob" in heads[1]
    assert run_cli("content", "history", "--limit", "1") == 0
    assert capsys.readouterr().out.count("\nversion ") == 0


def test_deps_still_take_a_plain_guide(engine: Engine) -> None:
    from dataclasses import replace

    from miliabot_tg.config import Settings
    from miliabot_tg.handlers import Deps
    from miliabot_tg.models import utcnow

    other = Guide(GUIDE.snippets[:1], GUIDE.tips)
    deps = Deps(settings=Settings(), engine=engine, guide=other, clock=utcnow)
    assert deps.guide is other
    copied = replace(deps, wake=lambda _when: None)
    assert copied.live is deps.live  # a copy follows the same published versions
    deps.live.follow(engine, None)
    publish(engine, bundled_dir("content"), "alice")
    assert deps.live.refresh()
    assert copied.guide == GUIDE
