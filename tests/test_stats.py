"""The operators' overview: its numbers after known events, /stats and `miliabot stats`."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update

from miliabot_tg import broadcasts as store
from miliabot_tg import cli, publishing, repo, stats, texts
from miliabot_tg.broadcasts import REMINDERS
from miliabot_tg.content import load_guide
from miliabot_tg.db import new_session
from miliabot_tg.paths import bundled_dir
from miliabot_tg.schedule import parse_remind
from miliabot_tg.stats import HEARTBEATS, OCCURRENCES, BroadcastLine, Outcomes
from tests.harness import USER, running_bot

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
DAY = NOW.replace(hour=0)
OPERATOR = 42


def _user(engine: Engine, user_id: int, seen: datetime, *reminders: str) -> list[int]:
    with new_session(engine) as session:
        repo.touch_user(
            session=session, user_id=user_id, first_name="Ann", language_code="en", now=seen
        )
        return [
            repo.add_reminder(
                session=session,
                user_id=user_id,
                spec=parse_remind(line, today=seen.date()),
                now=seen,
                default_key="UTC",
            ).id
            or 0
            for line in reminders
        ]


def _occurrence(engine: Engine, reminder_id: int, at: datetime, status: str, **more: Any) -> None:
    values = {
        "reminder_id": reminder_id,
        "user_id": 1,
        "scheduled_for": at,
        "due_at": at,
        "status": status,
        "late": False,
        "snoozes": 0,
        "attempts": 0,
    }
    with engine.begin() as conn:
        conn.execute(OCCURRENCES.insert().values(**(values | more)))


def _known_events(engine: Engine) -> int:
    """Four users, three reminders, a day of outcomes and one broadcast."""
    (first, _moisturize) = _user(
        engine, 1, NOW - timedelta(days=10), "sunscreen 08:00 daily", "moisturize 21:00 daily"
    )
    (paused,) = _user(engine, 2, NOW - timedelta(days=2), "sunscreen 09:00 daily")
    _user(engine, 3, NOW - timedelta(days=1))
    _user(engine, 4, NOW - timedelta(days=20))
    with new_session(engine) as session:
        repo.mark_blocked(session=session, user_id=3, now=NOW)
        repo.forget_user(session=session, user_id=4)
    with engine.begin() as conn:
        conn.execute(update(REMINDERS).where(REMINDERS.c.id == paused).values(paused=True))
        store.set_announcements(conn, 2, False, NOW)

    sent = {"sent_at": NOW}
    _occurrence(engine, first, DAY + timedelta(minutes=30), "sent", **sent)
    _occurrence(engine, first, DAY + timedelta(hours=1), "done", **sent)
    _occurrence(engine, first, DAY + timedelta(hours=2), "snoozed", snoozes=1, **sent)
    _occurrence(engine, first, DAY + timedelta(hours=3), "sent", late=True, **sent)
    _occurrence(engine, first, DAY + timedelta(hours=4), "missed")
    _occurrence(engine, first, DAY + timedelta(hours=5), "failed")
    _occurrence(engine, first, DAY + timedelta(hours=6), "skipped", **sent)
    _occurrence(engine, first, DAY + timedelta(hours=20), "pending")
    # Yesterday's and tomorrow's are not today's.
    _occurrence(engine, first, DAY - timedelta(minutes=1), "done", late=True, **sent)
    _occurrence(engine, first, DAY + timedelta(days=1), "pending")

    with engine.begin() as conn:
        broadcast_id = store.create_draft(conn, created_by=0, now=NOW, text="News")
        # One bot process alive, one gone quiet.
        conn.execute(HEARTBEATS.insert().values(instance="a", seen_at=NOW - timedelta(seconds=30)))
        conn.execute(HEARTBEATS.insert().values(instance="b", seen_at=NOW - timedelta(minutes=5)))
    store.start(engine, broadcast_id, NOW, "UTC")
    return broadcast_id


def test_the_overview_counts_a_known_day(engine: Engine) -> None:
    broadcast_id = _known_events(engine)
    with engine.connect() as conn:
        found = stats.collect(conn, NOW, content_version="v7")
    assert (found.users_active, found.users_blocked, found.users_deleted) == (2, 1, 1)
    assert found.users_new_this_week == 2
    assert found.announcements_off == 1
    assert found.reminders == (("sunscreen", 2), ("moisturize", 1), ("exfoliate", 0), ("custom", 0))
    assert found.reminders_paused == 1
    assert found.today == Outcomes(
        scheduled=8,
        sent=5,
        done=1,
        snoozed=1,
        skipped=1,
        late=1,
        missed=1,
        failed=1,
        pending=1,
    )
    assert found.content_version == "v7"
    assert found.bots_running == 1
    assert found.broadcasts == (BroadcastLine(broadcast_id, "running", "all", NOW, 1, 0, 0, 0),), (
        "user 1 only: 2 turned announcements off, 3 blocked the bot, 4 left"
    )

    shown = stats.render(found)
    assert "Bot processes running: 1" in shown
    assert "Users: 2 active, 1 blocked, 1 deleted; 2 new this week" in shown
    assert "Reminders: 3 (sunscreen 2, moisturize 1, exfoliate 0, custom 0); 1 paused" in shown
    assert "Today (UTC): 8 reminders due" in shown
    assert "sent 5, done 1, snoozed 1, skipped 1" in shown
    assert "late 1, missed 1, failed 1, pending 1" in shown
    assert "Content: v7" in shown
    assert f"#{broadcast_id} running, all, 11-26 15:00: sent 0/1, blocked 0, failed 0" in shown


def test_an_empty_database_reads_as_zeros(engine: Engine) -> None:
    with engine.connect() as conn:
        found = stats.collect(conn, NOW, content_version="v1")
    assert found.today == Outcomes(0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert found.users_active == 0 and found.broadcasts == ()
    assert "Broadcasts: none yet" in stats.render(found)


def test_miliabot_stats_prints_the_overview(
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _user(engine, 1, datetime.now(UTC), "sunscreen 08:00 daily")
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("MILIABOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MILIABOT_DATABASE_URL", database_url)
    with pytest.raises(SystemExit) as exited:
        cli.main(["stats"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Users: 1 active, 0 blocked, 0 deleted; 1 new this week" in out
    assert "Reminders: 1 (sunscreen 1," in out
    assert "Content: not published; folder guide " in out and "snippets)" in out

    # Once a version is published, that is what the bots serve and what stats names.
    publishing.publish(engine, bundled_dir("content"), "alice")
    with pytest.raises(SystemExit):
        cli.main(["stats"])
    assert f"Content: version 1 ({len(load_guide(bundled_dir('content')).snippets)} snippets)" in (
        capsys.readouterr().out
    )


async def test_stats_for_operators_and_an_unknown_command_for_anyone_else(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, admin_ids=frozenset({OPERATOR})) as bot:
        (theirs,) = await bot.say("/stats")
        (unknown,) = await bot.say("/statz")
        assert theirs.text == texts.unknown_command("/stats")
        assert theirs.text == unknown.text.replace("/statz", "/stats")  # type: ignore[union-attr]

        (overview,) = await bot.say("/stats", user_id=OPERATOR)
        assert overview.plain.startswith("📊 Overview")
        assert "Users: 2 active, 0 blocked, 0 deleted; 2 new this week" in overview.plain
        assert f"Content: {stats.version_label(None, bot.guide)}" in overview.plain
        assert len(overview.plain) < 4096

        # An operator in a group learns nothing either: only the private chat counts.
        group = await bot.say("/stats", user_id=OPERATOR, chat_id=-500, chat_type="group")
        assert all("Overview" not in m.plain for m in group)
        assert USER != OPERATOR
        assert bot.failures() == []
