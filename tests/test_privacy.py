"""/mydata sends everything stored about a user; /forget deletes it; /privacy says so."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from miliabot_tg import broadcasts as store
from miliabot_tg import repo, texts
from miliabot_tg.broadcasts import DELIVERIES, PREFERENCES, REMINDERS
from miliabot_tg.db import new_session
from miliabot_tg.models import Occurrence, UvLocation
from miliabot_tg.privacy import LOCATIONS
from miliabot_tg.schedule import parse_remind
from miliabot_tg.standin import DEFAULT_TOKEN, StandIn
from miliabot_tg.stats import OCCURRENCES
from tests.harness import USER, Harness, running_bot

OTHER = 2002


async def _a_user_with_everything(bot: Harness, user_id: int) -> None:
    """A reminder with history, quiet hours, a timezone and an announcement received."""
    await bot.say("/start", user_id=user_id)
    await bot.say("/quiet 22:00-07:00", user_id=user_id)
    await bot.say("/timezone Lisbon", user_id=user_id)
    with new_session(bot.engine) as session:
        reminder = repo.add_reminder(
            session=session,
            user_id=user_id,
            spec=parse_remind("sunscreen 08:30 daily", today=bot.clock().date()),
            now=bot.clock(),
            default_key="UTC",
        )
        session.add(
            Occurrence(
                reminder_id=reminder.id or 0,
                user_id=user_id,
                scheduled_for=bot.clock(),
                due_at=bot.clock(),
                status="done",
            )
        )
        # A location kept for UV forecasts (the user said yes; rounded to 0.1°).
        session.add(
            UvLocation(user_id=user_id, latitude=38.7, longitude=-9.1, updated_at=bot.clock())
        )
        session.commit()


async def _send_news(bot: Harness) -> None:
    with bot.engine.begin() as conn:
        broadcast_id = store.create_draft(conn, created_by=0, now=bot.clock(), text="News")
    store.start(bot.engine, broadcast_id, bot.clock(), "UTC")
    await bot.broadcaster.run_round()


def _export(bot: Harness, user_id: int) -> dict[str, Any]:
    (message,) = [m for m in bot.standin.chat(user_id) if m.document is not None][-1:]
    assert message.document == f"miliabot-data-{user_id}.json"
    assert message.document_type == "application/json"
    assert message.document_data is not None
    export: dict[str, Any] = json.loads(message.document_data)
    return export


async def test_mydata_sends_a_json_file_with_everything_stored_about_the_user(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url) as bot:
        await _a_user_with_everything(bot, USER)
        await _a_user_with_everything(bot, OTHER)  # someone else: not in the file
        await _send_news(bot)

        (reply,) = await bot.say("/mydata")
        assert reply.plain == texts.MYDATA_CAPTION
        export = _export(bot, USER)
        assert bot.failures() == []

    assert export["telegram_user_id"] == USER
    assert export["user"]["id"] == USER
    assert export["user"]["first_name"] == "Ann"
    assert export["user"]["timezone"] == "Europe/Lisbon"
    assert export["preferences"]["quiet_start"] == "22:00"
    assert export["preferences"]["announcements"] is True
    (reminder,) = export["reminders"]
    assert (reminder["kind"], reminder["user_id"]) == ("sunscreen", USER)
    (history,) = export["reminder_history"]
    assert (history["status"], history["reminder_id"]) == ("done", reminder["id"])
    (delivery,) = export["announcements_received"]
    assert (delivery["status"], delivery["user_id"]) == ("sent", USER)
    assert "claimed_by" not in delivery
    assert (export["location"]["latitude"], export["location"]["longitude"]) == (38.7, -9.1)
    assert "broadcasts_created" not in export
    assert export["exported_at"].endswith("+00:00")
    assert str(OTHER) not in json.dumps(export)


async def test_mydata_of_someone_unknown_is_an_empty_file(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say("/mydata")
        export = _export(bot, USER)
    # The visit itself is recorded first, so the user row is what there is.
    assert export["reminders"] == export["reminder_history"] == []
    assert export["announcements_received"] == []


async def test_forget_after_confirmation_deletes_everything_and_a_later_visit_starts_fresh(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url) as bot:
        await _a_user_with_everything(bot, USER)
        await _a_user_with_everything(bot, OTHER)
        await _send_news(bot)

        (question,) = await bot.say("/forget")
        assert "can't be undone" in question.plain
        await bot.press("No, keep it")
        with new_session(bot.engine) as session:
            assert repo.list_reminders(session=session, user_id=USER) != []
        await bot.say("/forget")
        done = await bot.press("Yes, delete my data")
        assert done.plain == texts.FORGOTTEN

        def left(user_id: int) -> dict[str, int]:
            counts = {}
            with bot.engine.connect() as conn:
                for name, table in (
                    ("reminders", REMINDERS),
                    ("history", OCCURRENCES),
                    ("deliveries", DELIVERIES),
                    ("preferences", PREFERENCES),
                    ("location", LOCATIONS),
                ):
                    rows = conn.execute(table.select().where(table.c.user_id == user_id))
                    counts[name] = len(rows.all())
            return counts

        assert set(left(USER).values()) == {0}
        assert set(left(OTHER).values()) == {1}
        with new_session(bot.engine) as session:
            user = repo.get_user(session=session, user_id=USER)
        assert user is not None
        assert (user.status, user.first_name, user.timezone) == ("deleted", "", None)

        # Days later they write again: a first visit, with nothing of before.
        bot.clock.advance(timedelta(days=3))
        (hello,) = await bot.say("/start")
        assert hello.plain.startswith("Hi Ann! 👋"), "not “Welcome back”"
        await bot.say("/mydata")
        export = _export(bot, USER)
        assert export["reminders"] == export["reminder_history"] == []
        assert export["announcements_received"] == []
        assert export["preferences"] is None
        assert export["location"] is None
        assert export["user"]["first_seen"] == export["user"]["last_seen"]


async def test_privacy_says_what_is_stored_who_sees_what_and_how_to_get_or_delete_it(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path) as bot:
        (privacy,) = await bot.say("/privacy")
        (helped,) = await bot.say("/help")
        names = [name for name, _ in bot.standin.commands]
    text = privacy.plain
    for stored in ("Telegram user id", "timezone", "quiet hours", "announcements"):
        assert stored in text
    assert "/stats" in text and "how each announcement went" in text
    assert "don't store the messages you write" in text
    assert "/mydata" in text and "/forget" in text
    assert "/mydata" in helped.plain
    assert "mydata" in names


@pytest.mark.parametrize("via", ["multipart", "file_id"])
async def test_the_standin_takes_document_uploads_and_refuses_anything_else(via: str) -> None:
    async with StandIn() as standin, httpx.AsyncClient() as client:
        url = f"{standin.api_root}/bot{DEFAULT_TOKEN}/sendDocument"
        if via == "multipart":
            answer = await client.post(
                url,
                data={"chat_id": "7", "caption": "<b>yours</b>", "parse_mode": "HTML"},
                files={"document": ("a.json", b'{"x": 1}', "application/json")},
            )
            assert answer.status_code == 200, answer.text
            document = answer.json()["result"]["document"]
            assert (document["file_name"], document["file_size"]) == ("a.json", 8)
            assert answer.json()["result"]["caption"] == "yours"
            (message,) = standin.chat(7)
            assert message.document_data == b'{"x": 1}'
        else:
            answer = await client.post(url, json={"chat_id": 7, "document": "some words"})
            assert answer.status_code == 400
            assert standin.chat(7) == []
