"""The bot as people use it: the real Application over HTTP against the Bot API stand-in."""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from miliabot_tg import handlers, repo, texts
from miliabot_tg.content import TOPICS
from miliabot_tg.db import new_session
from miliabot_tg.models import UserStatus
from tests.harness import USER, Harness, running_bot

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(tmp_path, admin_ids=frozenset({42})) as harness:
        yield harness
        assert harness.failures() == [], "the bot sent something Telegram would refuse"


async def test_start_welcomes_and_says_it_is_not_medical_advice(bot: Harness) -> None:
    (reply,) = await bot.say("/start", first_name="Zoë <3")
    assert reply.plain.startswith("Hi Zoë <3! 👋 I'm MiliaBot.")
    assert "/guide" in reply.plain
    assert "general education, not a diagnosis or treatment" in reply.plain
    assert reply.parse_mode == "HTML"


async def test_start_greets_a_returning_user(bot: Harness) -> None:
    await bot.say("/start")
    bot.clock.advance(timedelta(days=3))
    (reply,) = await bot.say("/start")
    assert reply.plain.startswith("Welcome back, Ann!")


async def test_users_are_remembered_in_the_database(bot: Harness) -> None:
    await bot.say("hello", first_name="Ann", language_code="pt-BR")
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=USER)
    assert user is not None
    assert (user.first_name, user.language_code, user.status) == ("Ann", "pt-BR", "active")
    assert user.first_seen == bot.clock.now


async def test_a_visit_is_looked_up_once_a_minute_not_on_every_message(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[int] = []
    real = repo.visit_is_news

    def counted(**kwargs: Any) -> bool:
        looked.append(kwargs["user_id"])
        return real(**kwargs)

    monkeypatch.setattr(repo, "visit_is_news", counted)
    await bot.say("hello")
    await bot.say("sunscreen")
    await bot.say("/help")
    assert looked == [USER], "within a minute of a lookup, a message asks nothing of it"
    await bot.say("hello", first_name="Annie")  # a new name is news at once
    assert looked == [USER, USER]
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=USER)
        assert user is not None
        assert user.first_name == "Annie"
    bot.clock.advance(handlers.SEEN_FOR)
    await bot.say("hello", first_name="Annie")
    assert looked == [USER, USER, USER]


async def test_a_forgotten_user_who_writes_again_starts_fresh_at_once(bot: Harness) -> None:
    await bot.say("/start")
    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    bot.clock.advance(timedelta(seconds=5))  # well within a minute of the last lookup
    await bot.say("hello")
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=USER)
    assert user is not None
    assert (user.status, user.first_seen) == (UserStatus.ACTIVE, bot.clock.now)


def test_users_seen_lately_are_bounded_oldest_dropped_first() -> None:
    visits = handlers.Visits()
    now = datetime(2026, 12, 2, tzinfo=UTC)
    for user_id in range(handlers.MAX_SEEN + 1):
        visits.note_seen(user_id, "Ann", None, now)
    assert not visits.seen_lately(0, "Ann", None, now)
    assert visits.seen_lately(1, "Ann", None, now)
    assert not visits.seen_lately(1, "Ann", "en", now)
    assert not visits.seen_lately(1, "Ann", None, now + handlers.SEEN_FOR)
    visits.drop(1)
    assert not visits.seen_lately(1, "Ann", None, now)


async def test_command_menu_is_published_at_start_up(bot: Harness) -> None:
    names = [name for name, _ in bot.standin.commands]
    assert names == [
        "guide",
        "help",
        "remind",
        "reminders",
        "timezone",
        "quiet",
        "stop",
        "outdoors",
        "progress",
        "settings",
        "privacy",
        "mydata",
        "forget",
        "start",
    ]


async def test_guide_menu_offers_sections_that_hold_every_topic(bot: Harness) -> None:
    (menu,) = await bot.say("/guide")
    labels = [label for row in menu.buttons for label, _ in row]
    topics = list(texts.sections(bot.guide))
    assert labels == [texts.section_label(t) for t in topics]
    assert len(labels) < len(bot.guide.snippets), "sections, not a wall of every topic"
    assert all(len(row) <= 2 for row in menu.buttons)
    assert all(len(data.encode()) <= 64 for data in menu.callback_data())
    assert "not a diagnosis or treatment" in menu.plain
    # Every topic is one or two taps away: a section of one opens its topic at once.
    reached: list[str] = []
    for label in labels:
        shown = await bot.press(label)
        assert shown.message_id == menu.message_id
        if shown.plain.endswith("Pick a topic."):  # a section: its topics, the way back
            titles = [row[0][0] for row in shown.buttons[:-1]]
            assert shown.buttons[-1][0][0] == "« All topics"
            reached += titles
        else:
            reached.append(shown.plain.split("\n", 1)[0])
        await bot.press("« All topics")
    assert sorted(reached) == sorted(s.title for s in bot.guide.snippets)


def test_every_content_topic_has_a_section_label() -> None:
    assert set(texts.SECTION_LABELS) == set(TOPICS)
    assert all(len(label) <= 24 for label in texts.SECTION_LABELS.values())


async def test_topic_opens_in_place_with_related_topics_and_a_way_back(bot: Harness) -> None:
    (menu,) = await bot.say("/guide")
    section = await bot.press("🔍 Milia basics")
    assert section.message_id == menu.message_id, "the menu should be edited, not a new message"
    assert section.plain == "🔍 Milia basics\n\nPick a topic."
    shown = await bot.press("What milia are")
    assert shown.message_id == menu.message_id
    assert len(bot.standin.chat(USER)) == 1
    assert shown.plain.startswith("What milia are\n\nMilia are tiny")
    snippet = bot.guide.get("what-milia-are")
    assert snippet is not None
    related_titles = [bot.guide.get(r).title for r in snippet.related]  # type: ignore[union-attr]
    labels = [label for row in shown.buttons for label, _ in row]
    assert labels == [f"➜ {t}" for t in related_titles] + ["« 🔍 Milia basics", "« All topics"]

    related = await bot.press(f"➜ {related_titles[0]}")
    assert related.plain.startswith(related_titles[0])
    back = await bot.press("« All topics")
    assert back.plain.startswith("📖 The milia guide")
    assert back.edits == 4
    assert [c.ok for c in bot.standin.calls_to("answerCallbackQuery")] == [True] * 4
    again = await bot.press("🔍 Milia basics")
    await bot.press("What milia are")
    up = await bot.press("« 🔍 Milia basics")
    assert up.plain == again.plain, "back to the section the topic belongs to"


async def test_a_section_or_topic_that_is_gone_shows_the_menu_again(bot: Harness) -> None:
    (menu,) = await bot.say("/guide")
    for data in ("guide:section:no-such-section", "guide:open:no-such-topic"):
        await bot.handled(bot.standin.forge_press(USER, data, message_id=menu.message_id))
        shown = bot.standin.last(USER)
        assert shown is not None
        assert shown.plain.startswith(texts.TOPIC_GONE)
        assert "📖 The milia guide" in shown.plain
        # The second shows what the first did; Telegram refuses an edit that changes nothing.
        bot.allow_failures(NOT_MODIFIED)


async def test_pressing_the_same_topic_twice_changes_nothing_and_fails_nothing(
    bot: Harness,
) -> None:
    await bot.say("/guide")
    menu = await bot.press("☀️ Sun protection")
    # A double tap: both presses leave the phone before the first edit arrives.
    first = bot.standin.press_button(USER, menu.message_id, "guide:open:sun-protection")
    second = bot.standin.press_button(USER, menu.message_id, "guide:open:sun-protection")
    await bot.handled(first)
    await bot.handled(second)
    shown = bot.standin.last(USER)
    assert shown is not None
    assert shown.edits == 2
    assert shown.plain.startswith("Daily sunscreen")
    assert len(bot.standin.calls_to("answerCallbackQuery")) == 3
    bot.allow_failures(NOT_MODIFIED)


async def test_guide_with_words_offers_the_best_matches(bot: Harness) -> None:
    (reply,) = await bot.say("/guide sunscreen")
    assert reply.plain.startswith("🔎 Topics about “sunscreen”")
    labels = [label for row in reply.buttons for label, _ in row]
    assert labels[0] == "Daily sunscreen"
    assert labels[-1] == "« All topics"
    opened = await bot.press("Daily sunscreen")
    assert opened.plain.startswith("Daily sunscreen")


async def test_plain_text_is_a_guide_search(bot: Harness) -> None:
    (reply,) = await bot.say("my newborn has white spots")
    labels = [label for row in reply.buttons for label, _ in row]
    assert "Milia in babies" in labels[:3]


async def test_a_search_without_matches_suggests_topics_instead_of_silence(bot: Harness) -> None:
    (reply,) = await bot.say("/guide quantum chromodynamics")
    assert "couldn't find anything about “quantum chromodynamics”" in reply.plain
    labels = [label for row in reply.buttons for label, _ in row]
    assert labels[:4] == [s.title for s in bot.guide.snippets[:4]]


async def test_a_search_with_no_good_answer_says_so_and_offers_the_closest(bot: Harness) -> None:
    (reply,) = await bot.say("hair loss")
    assert "I don't have a topic that answers “hair loss”" in reply.plain
    assert "Topics about" not in reply.plain
    labels = [label for row in reply.buttons for label, _ in row]
    closest = bot.guide.find("hair loss").closest
    assert closest and labels == [s.title for s in closest[:4]] + ["« All topics"]
    opened = await bot.press(labels[0])
    assert opened.plain.startswith(labels[0])


async def test_people_s_words_find_their_topic_first(bot: Harness) -> None:
    for words, title in [
        ("what are milia", "What milia are"),
        ("can i pop milia", "Don't squeeze or pick milia"),
        ("suncreen", "Daily sunscreen"),
        ("moisturiser", "Moisturizing the right way"),
    ]:
        (reply,) = await bot.say(words)
        assert reply.plain.startswith("🔎 Topics about"), words
        assert reply.buttons[0][0][0] == title, words


async def test_user_text_is_escaped_and_shortened_when_echoed(bot: Harness) -> None:
    (reply,) = await bot.say("<b>zzz</b> & <script>" + " more" * 40)
    assert reply.text is not None
    assert "&lt;b&gt;zzz&lt;/b&gt; &amp; &lt;script&gt;" in reply.text
    assert "…”" in reply.plain
    assert len(reply.plain) < 400


async def test_help_and_privacy_answer(bot: Harness) -> None:
    (help_reply,) = await bot.say("/help")
    assert "/guide" in help_reply.plain
    assert "not a diagnosis" in help_reply.plain
    (privacy,) = await bot.say("/privacy")
    assert "Telegram user id" in privacy.plain
    assert "/forget" in privacy.plain


async def test_unknown_commands_get_a_friendly_answer(bot: Harness) -> None:
    (reply,) = await bot.say("/frobnicate now")
    assert reply.plain.startswith("I don't know the command /frobnicate.")
    assert "/help" in reply.plain


async def test_non_text_messages_get_a_pointer(bot: Harness) -> None:
    # A shared contact (a location would set the timezone).
    update_id = bot.standin.queue_update(
        {
            "message": {
                "message_id": 500,
                "date": 0,
                "chat": {"id": USER, "type": "private", "first_name": "Ann"},
                "from": {"id": USER, "is_bot": False, "first_name": "Ann"},
                "contact": {"phone_number": "+10000000000", "first_name": "Bo"},
            }
        }
    )
    await bot.handled(update_id)
    last = bot.standin.last(USER)
    assert last is not None
    assert last.plain.startswith("I can only read text.")


async def test_forget_erases_the_user_after_confirmation(bot: Harness) -> None:
    await bot.say("/start")
    (question,) = await bot.say("/forget")
    assert "Delete everything" in question.plain
    kept = await bot.press("No, keep it")
    assert kept.plain == "Okay, nothing was deleted."
    with new_session(bot.engine) as session:
        assert repo.get_user(session=session, user_id=USER).status == "active"  # type: ignore[union-attr]
    await bot.say("/forget")
    done = await bot.press("Yes, delete my data")
    assert done.plain.startswith("Done: I've deleted")
    assert done.buttons == []
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=USER)
    assert user is not None
    assert (user.status, user.first_name) == ("deleted", "")


async def test_groups_get_a_short_pointer_to_the_private_chat(bot: Harness) -> None:
    group = -1001234
    replies = await bot.say("/guide@miliabot_test_bot", chat_id=group, chat_type="supergroup")
    assert len(replies) == 1
    assert "private chats" in replies[0].plain
    assert "@miliabot_test_bot" in replies[0].plain
    assert await bot.say("chatting about milia", chat_id=group, chat_type="supergroup") == []
    with new_session(bot.engine) as session:
        assert repo.get_user(session=session, user_id=USER) is None


async def test_channel_commands_get_the_pointer_too(bot: Harness) -> None:
    replies = await bot.say("/start", chat_id=-100777, chat_type="channel")
    assert len(replies) == 1
    assert "private chats" in replies[0].plain


async def test_a_failure_reaches_the_user_as_an_apology_and_the_operator_as_a_note(
    bot: Harness,
) -> None:
    bot.standin.fail_next("sendMessage", status=400, description="Bad Request: something odd")
    await bot.say("/help")
    (apology,) = [m for m in bot.standin.chat(USER) if m.plain.startswith("Sorry")]
    assert "try again" in apology.plain
    (note,) = bot.standin.chat(42)
    assert "telegram.error.BadRequest while handling an update" in note.plain
    assert "at handlers.py:" in note.plain
    assert "in help" in note.plain
    bot.allow_failures("Bad Request: something odd")


async def test_a_message_too_old_to_edit_is_answered_with_a_new_one(bot: Harness) -> None:
    await bot.say("/guide")
    await bot.press("👶 Babies")
    bot.standin.fail_next(
        "editMessageText", status=400, description="Bad Request: message can't be edited"
    )
    await bot.press("Milia in babies")  # on the section, one tap before
    messages = bot.standin.chat(USER)
    assert len(messages) == 2
    assert messages[1].plain.startswith("Milia in babies")
    bot.allow_failures("Bad Request: message can't be edited")


async def test_a_user_who_blocks_the_bot_mid_conversation_is_marked_until_they_return(
    bot: Harness,
) -> None:
    await bot.say("/start")
    update_id = bot.standin.send_message("/help")
    bot.standin.block(USER)  # they block the bot before its answer arrives
    await bot.handled(update_id)
    with new_session(bot.engine) as session:
        assert repo.get_user(session=session, user_id=USER).status == "blocked"  # type: ignore[union-attr]
    assert bot.standin.chat(42) == [], "a blocked user is not an error to page anyone about"
    (reply,) = await bot.say("/start")  # writing again unblocks the chat on Telegram
    assert "MiliaBot" in reply.plain
    with new_session(bot.engine) as session:
        assert repo.get_user(session=session, user_id=USER).status == "active"  # type: ignore[union-attr]
    bot.allow_failures("Forbidden: bot was blocked by the user")


@pytest.mark.postgres
async def test_the_bot_runs_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    async with running_bot(tmp_path, database_url=postgres_url) as harness:
        (reply,) = await harness.say("/start")
        assert "MiliaBot" in reply.plain
        with new_session(harness.engine) as session:
            assert repo.count_users(session=session, status=UserStatus.ACTIVE) == 1
        assert harness.failures() == []


async def test_operators_get_one_error_note_a_minute_not_a_flood(bot: Harness) -> None:
    for _ in range(3):
        bot.standin.fail_next("sendMessage", status=400, description="Bad Request: odd")
        await bot.say("/help")
    assert len(bot.standin.chat(42)) == 1
    bot.clock.advance(timedelta(minutes=1))
    bot.standin.fail_next("sendMessage", status=400, description="Bad Request: odd")
    await bot.say("/help")
    notes = bot.standin.chat(42)
    assert len(notes) == 2
    assert "(and 2 more since the last note; see the logs)" in notes[1].plain
    apologies = [m for m in bot.standin.chat(USER) if m.plain.startswith("Sorry")]
    assert len(apologies) == 4, "every user still hears that something went wrong"
    bot.allow_failures("Bad Request: odd")


def _membership(bot: Harness, status: str, *, user_id: int = USER) -> int:
    """Queue the update Telegram sends when a user blocks ("kicked") or unblocks the bot."""
    me = {"id": bot.app.bot.id, "is_bot": True, "first_name": "MiliaBot"}
    before = "member" if status == "kicked" else "kicked"
    return bot.standin.queue_update(
        {
            "my_chat_member": {
                "chat": {"id": user_id, "type": "private", "first_name": "Ann"},
                "from": {"id": user_id, "is_bot": False, "first_name": "Ann"},
                "date": 0,
                "old_chat_member": {"user": me, "status": before, "until_date": 0},
                "new_chat_member": {"user": me, "status": status, "until_date": 0},
            }
        }
    )


def _status_and_next_due(
    bot: Harness, user_id: int = USER
) -> tuple[str | None, list[datetime | None]]:
    with new_session(bot.engine) as session:
        user = repo.get_user(session=session, user_id=user_id)
        due = [r.next_due_at for r in repo.list_reminders(session=session, user_id=user_id)]
    return (user.status if user else None), due


async def test_blocking_the_bot_stops_reminders_at_once_and_unblocking_resumes_them(
    bot: Harness,
) -> None:
    said = len(await bot.say("/remind sunscreen 08:00 daily"))
    assert _status_and_next_due(bot)[1] != [None]
    await bot.handled(_membership(bot, "kicked"))
    assert _status_and_next_due(bot) == ("blocked", [None])
    bot.clock.advance(timedelta(days=2))
    await bot.handled(_membership(bot, "member"))
    status, due = _status_and_next_due(bot)
    assert status == "active"
    assert due == [bot.clock.now.replace(hour=8, minute=0) + timedelta(days=1)]
    assert len(bot.standin.chat(USER)) == said, "a change of membership is not answered"


async def test_membership_changes_neither_revive_the_forgotten_nor_create_strangers(
    bot: Harness,
) -> None:
    await bot.say("/start")
    await bot.say("/forget")
    await bot.press("Yes, delete my data")
    await bot.handled(_membership(bot, "kicked"))
    await bot.handled(_membership(bot, "member"))
    assert _status_and_next_due(bot) == ("deleted", [])
    stranger = 5005
    await bot.handled(_membership(bot, "kicked", user_id=stranger))
    await bot.handled(_membership(bot, "member", user_id=stranger))
    assert _status_and_next_due(bot, stranger) == (None, [])
    assert bot.standin.chat(stranger) == []


async def test_an_operator_note_names_the_error_and_where_but_no_user_data(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await bot.say("/start", first_name="Zoë")
    # The database refuses the next reminder; its error message quotes the row it refused.
    with new_session(bot.engine) as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON reminders "
                "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
            )
        )
        session.commit()
    (apology,) = await bot.say("/remind Zoë's retinol 21:00 daily", first_name="Zoë")
    assert apology.plain.startswith("Sorry")
    (note,) = bot.standin.chat(42)
    assert "retinol" not in note.plain
    assert "Zoë" not in note.plain
    assert "disk quota" not in note.plain
    assert "sqlalchemy.exc.IntegrityError while handling an update" in note.plain
    assert "reminders/remind.py:" in note.plain  # the callback
    assert "in add_reminder" in note.plain  # the line that failed
    found = re.search(r"reference ([0-9a-f]{8})\b", note.plain)
    assert found is not None, note.plain
    (logged,) = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert logged.exc_info is not None, "the log has the full traceback"
    assert "retinol" in str(logged.exc_info[1]), "and the details the note leaves out"
