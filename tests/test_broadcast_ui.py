"""Broadcasts from Telegram: /broadcast, its preview and buttons, /broadcasts, operators only."""

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from telegram import Chat, Message, MessageEntity, User

from miliabot_tg import broadcast_texts as bt
from miliabot_tg import broadcasts as store
from miliabot_tg import texts
from miliabot_tg.broadcast_handlers import text_after_command
from miliabot_tg.broadcasts import BROADCASTS, DELIVERIES, due_for
from miliabot_tg.standin import BotMessage, parse_html
from miliabot_tg.telegram_html import utf16_len
from tests.harness import Harness, running_bot
from tests.test_dispatch import BERLIN, _at, _remind, _user

NOW = _at(date(2026, 11, 26), 9, 0)
OP = 900  # the operator
ADMINS = frozenset({OP})
STRANGER = 2002  # a user who is not an operator
USERS = (101, 102, 103)


async def _setup(h: Harness, users: tuple[int, ...] = USERS) -> None:
    h.clock.now = NOW
    _user(h, OP)
    with h.engine.begin() as conn:  # the operator does not get their own announcements
        store.set_announcements(conn, OP, False, NOW)
    for user_id in users:
        _user(h, user_id)


async def _draft(h: Harness, text: str, **kwargs: Any) -> tuple[BotMessage, BotMessage]:
    """Send /broadcast as the operator; return the preview and the control message."""
    preview, controls = await h.say(text, user_id=OP, **kwargs)
    return preview, controls


async def _press(h: Harness, label: str, *, message: BotMessage | None = None) -> str | None:
    """Press a button in the operator's chat; return the answer the operator saw."""
    message_id = message.message_id if message else None
    await h.handled(h.standin.press(OP, label, message_id=message_id))
    return h.standin.answered_callbacks[-1].text


async def _forge(h: Harness, data: str, *, user_id: int = OP, chat_id: int = OP) -> str | None:
    """A press with made-up callback data; return the answer."""
    await h.handled(h.standin.forge_press(chat_id, data, user_id=user_id))
    return h.standin.answered_callbacks[-1].text


def _row(h: Harness, broadcast_id: int) -> Any:
    with h.engine.connect() as conn:
        return store.get(conn, broadcast_id)


def _latest_id(h: Harness) -> int:
    with h.engine.connect() as conn:
        return int(conn.execute(select(func.max(BROADCASTS.c.id))).scalar_one())


def _count(h: Harness, table: Any = BROADCASTS) -> int:
    with h.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _now(h: Harness, message: BotMessage) -> BotMessage:
    """The operator's message as it is now, after edits."""
    return next(m for m in h.standin.chat(OP) if m.message_id == message.message_id)


def _labels(message: BotMessage) -> list[str]:
    return [label for row in message.buttons for label, _ in row]


def _seen(message: BotMessage) -> tuple[Any, ...]:
    """What a user sees of a message: text, formatting, photo and buttons."""
    return (message.plain, message.entities, message.photo, message.buttons)


def test_every_kind_of_formatting_survives_the_trip_to_html() -> None:
    """Each entity Telegram sends comes back from the HTML as the same entity, shifted."""
    text = "/broadcast b i u s sp code pre link ment quote exq 😀 @someone #tag https://x.org"

    def at(word: str, kind: str, **extra: Any) -> MessageEntity:
        i = text.index(word)
        return MessageEntity(kind, utf16_len(text[:i]), utf16_len(word), **extra)

    entities = [
        MessageEntity("bot_command", 0, 10),
        at("b ", "bold"),
        at("i ", "italic"),
        at("u ", "underline"),
        at("s ", "strikethrough"),
        at("sp", "spoiler"),
        at("code", "code"),
        at("pre", "pre", language="python"),
        at("link", "text_link", url="https://e.org/?a=1&b=2"),
        at("ment", "text_mention", user=User(5, "X", False)),
        at("quote", "blockquote"),
        at("exq", "expandable_blockquote"),
        at("😀", "custom_emoji", custom_emoji_id="123"),
        at("@someone", "mention"),
    ]
    message = Message(1, NOW, Chat(OP, "private"), text=text, entities=entities)
    plain, found = parse_html(text_after_command(message))
    assert plain == text.removeprefix("/broadcast ")
    shift = len("/broadcast ")
    wanted = [
        (e.type if e.type != "text_mention" else "text_link", e.offset - shift, e.length)
        for e in entities[1:]
        if e.type != "mention"  # Telegram finds mentions, hashtags and URLs by itself
    ]
    assert [(e["type"], e["offset"], e["length"]) for e in found] == wanted
    assert next(e for e in found if e["type"] == "pre")["language"] == "python"
    links = [e["url"] for e in found if e["type"] == "text_link"]
    assert links == ["https://e.org/?a=1&b=2", "tg://user?id=5"]


# --- drafting and previews -----------------------------------------------------------------------


async def test_text_keeps_the_operators_formatting_and_users_get_exactly_the_preview(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url, admin_ids=ADMINS) as h:
        await _setup(h)
        # Emoji before the formatting: Telegram's offsets count UTF-16 units, not characters.
        typed = (
            "/broadcast 🎉🌍 <b>New</b> in the guide: <a href='https://example.org/a?b=1&c=2'>"
            "read it</a> &amp; <i>enjoy 😊</i> <code>&lt;b&gt;</code>"
        )
        plain, entities = parse_html(typed)
        preview, controls = await _draft(h, plain, entities=entities)
        wanted = parse_html(typed.removeprefix("/broadcast "))
        assert (preview.plain, preview.entities) == wanted
        assert _labels(preview) == [bt.OFF_BUTTON]
        assert "Broadcast #1" in controls.plain and "3 people" in controls.plain
        assert _labels(controls) == [bt.SEND, bt.AUDIENCE, bt.TIMING, bt.CANCEL]

        assert await _press(h, bt.SEND) == "Broadcast #1 is on its way to 3 people."
        await h.broadcaster.run_round()
        for user_id in USERS:
            (got,) = h.standin.chat(user_id)
            assert _seen(got) == _seen(preview)
        assert h.failures() == []


async def test_formatting_that_spans_the_command_is_clipped_to_the_text(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        plain, entities = parse_html("/broad<b>cast all</b> bold <i>plain</i>")
        preview, _ = await _draft(h, plain, entities=entities)
        assert (preview.plain, preview.entities) == parse_html("<b>all</b> bold <i>plain</i>")


async def test_html_typed_by_the_operator_arrives_as_text(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h, (101,))
        typed = '<b>not bold</b> & <script>alert("x")</script> <a href="javascript:x">'
        preview, _ = await _draft(h, f"/broadcast {typed}")
        assert preview.plain == typed and preview.entities == []
        await _press(h, bt.SEND)
        await h.broadcaster.run_round()
        assert h.standin.chat(101)[0].plain == typed
        (listing,) = await h.say("/broadcasts", user_id=OP)
        assert "<script>" in listing.plain  # escaped in the list too, shown as typed
        # Ids and choices that reach answers are escaped as well.
        (answer,) = await h.say("/broadcast snippet <b>x</b>", user_id=OP)
        assert "<b>x</b>" in answer.plain
        assert h.failures() == []


async def test_usage_unknown_snippet_and_a_refused_preview_draft_nothing(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        (usage,) = await h.say("/broadcast", user_id=OP)
        assert "/broadcast snippet ID" in usage.plain
        (unknown,) = await h.say("/broadcast snippet no-such-thing", user_id=OP)
        assert "There is no snippet no-such-thing" in unknown.plain
        assert h.guide.snippets[0].id in unknown.plain, "says which ids there are"
        (which,) = await h.say("/broadcast snippet", user_id=OP)
        assert which.plain.startswith("Which snippet?")
        (sent_id,) = [m["message_id"] for m in h.standin.sent_by_users(OP)][-1:]
        h.standin.fail_next(
            "copyMessage", status=400, description="Bad Request: message to copy not found"
        )
        h.allow_failures("Bad Request: message to copy not found")
        (refused,) = await h.say("/broadcast", user_id=OP, reply_to=sent_id)
        assert "refused the preview (Message to copy not found)" in refused.plain
        assert _count(h) == 0
        assert h.failures() == []


async def test_a_snippet_broadcast_opens_the_snippet(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h, (101,))
        snippet = h.guide.snippets[1]
        preview, _ = await _draft(h, f"/broadcast snippet {snippet.id}")
        assert snippet.title in preview.plain
        assert _labels(preview) == [f"📖 Read: {snippet.title}", bt.OFF_BUTTON]
        await _press(h, bt.SEND)
        await h.broadcaster.run_round()
        (got,) = h.standin.chat(101)
        assert _seen(got) == _seen(preview)
        opened = await h.press(f"📖 Read: {snippet.title}", chat_id=101)
        assert opened.plain.startswith(snippet.title)


async def test_a_reply_copies_a_photo_with_its_caption(tmp_path: Path, database_url: str) -> None:
    async with running_bot(tmp_path, database_url=database_url, admin_ids=ADMINS) as h:
        await _setup(h, (101, 102))
        caption, entities = parse_html("🌞 <b>Sunscreen</b> season: <i>reapply</i>")
        await h.handled(h.standin.send_photo(caption, caption_entities=entities, user_id=OP))
        photo = h.standin.sent_by_users(OP)[-1]
        preview, controls = await _draft(h, "/broadcast", reply_to=photo["message_id"])
        assert preview.photo == photo["photo"][-1]["file_id"]
        assert (preview.plain, preview.entities) == (caption, entities)
        assert _labels(preview) == [bt.OFF_BUTTON]
        assert "2 people" in controls.plain
        await _press(h, bt.SEND)
        await h.broadcaster.run_round()
        for user_id in (101, 102):
            (got,) = h.standin.chat(user_id)
            assert _seen(got) == _seen(preview)
        assert _row(h, 1).body == "copy"


# --- audience, timing, sending -------------------------------------------------------------------


async def test_the_audience_button_changes_who_and_how_many(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        h.clock.now = NOW - timedelta(days=20)
        _user(h, 104)  # last seen 20 days ago
        await _setup(h)
        _remind(h, "sunscreen 08:00 daily", 103)
        _, controls = await _draft(h, "/broadcast hello")
        assert "4 people" in controls.plain
        menu = await h.press(bt.AUDIENCE, chat_id=OP)
        assert menu.message_id == controls.message_id, "the menu replaces the controls"
        assert "✓ All users" in _labels(menu)
        after = await h.press("Sunscreen reminders", chat_id=OP)
        assert "users with a sunscreen reminder" in after.plain and "1 person" in after.plain
        assert _row(h, 1).audience == "kind:sunscreen"
        await h.press(bt.AUDIENCE, chat_id=OP)
        after = await h.press("Active in the last 7 days", chat_id=OP)
        assert "3 people" in after.plain and _row(h, 1).audience == "active:7"
        await h.press(bt.AUDIENCE, chat_id=OP)
        back = await h.press(bt.BACK, chat_id=OP)
        assert "3 people" in back.plain, "back changes nothing"
        await _press(h, bt.SEND)
        await h.broadcaster.run_round()
        assert [len(h.standin.chat(u)) for u in (101, 102, 103, 104)] == [1, 1, 1, 0]


async def test_a_local_hour_is_recorded_and_each_user_gets_it_on_their_clock(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h, (101,))
        _user(h, 102, zone="Asia/Tokyo")
        _, controls = await _draft(h, "/broadcast good morning")
        assert "Timing: now" in controls.plain
        menu = await h.press(bt.TIMING, chat_id=OP)
        assert _labels(menu)[:2] == [f"✓ {bt.NOW}", "09:00 local"]
        after = await h.press("10:00 local", chat_id=OP)
        assert "at 10:00 in each user's own time zone" in after.plain
        assert _row(h, 1).local_time == "10:00"
        await _press(h, bt.SEND)
        with h.engine.connect() as conn:
            due = dict(conn.execute(select(DELIVERIES.c.user_id, DELIVERIES.c.due_at)).all())
        assert {u: d.replace(tzinfo=NOW.tzinfo) for u, d in due.items()} == {
            101: due_for(NOW, "10:00", BERLIN, None),
            102: due_for(NOW, "10:00", "Asia/Tokyo", None),
        }
        await h.broadcaster.run_round()
        assert h.standin.chat(101) == [], "not before 10:00 in Berlin"
        progress = h.standin.last(OP)
        assert progress is not None and "Left: 2" in progress.plain
        assert _labels(progress) == [bt.PAUSE, bt.CANCEL], "the broadcaster's edits keep them"
        h.clock.advance(timedelta(hours=1))
        await h.broadcaster.run_round()
        assert len(h.standin.chat(101)) == 1 and h.standin.chat(102) == []

        # Back to "now" on another draft.
        await _draft(h, "/broadcast later")
        await h.press(bt.TIMING, chat_id=OP)
        await h.press("12:00 local", chat_id=OP)
        assert _row(h, 2).local_time == "12:00"
        menu = await h.press(bt.TIMING, chat_id=OP)
        assert "✓ 12:00 local" in _labels(menu)
        after = await h.press(bt.NOW, chat_id=OP)
        assert "Timing: now" in after.plain and _row(h, 2).local_time is None


async def test_send_reaches_everyone_once_and_the_controls_become_the_progress(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        _, controls = await _draft(h, "/broadcast hello all")
        await _press(h, bt.SEND)
        progress = h.standin.last(OP)
        assert progress is not None and progress.message_id == controls.message_id
        assert "Broadcast #1 is going out" in progress.plain
        assert _labels(progress) == [bt.PAUSE, bt.CANCEL]
        await h.broadcaster.run_round()
        report = h.standin.last(OP)
        assert report is not None and report.message_id == controls.message_id
        assert "Broadcast #1 is done" in report.plain and "Sent: 3 of 3" in report.plain
        assert report.buttons == [], "nothing left to pause or cancel"
        assert await _forge(h, "bc:send:1") == "Broadcast #1 is done: it can't be sent now."
        await h.broadcaster.run_round()
        assert [len(h.standin.chat(u)) for u in USERS] == [1, 1, 1]


async def test_pressing_send_twice_at_once_starts_one_broadcast(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url, admin_ids=ADMINS) as h:
        await _setup(h)
        await _draft(h, "/broadcast once")
        presses = [h.standin.press(OP, bt.SEND) for _ in range(2)]  # both before either runs
        await asyncio.gather(*(h.handled(p) for p in presses))
        answers = {str(a.text) for a in h.standin.answered_callbacks[-2:]}
        refusals = {
            "Broadcast #1 is running: it can't be sent now.",  # the second read it started
            "Broadcast 1 is running, not a draft.",  # ... or found out in store.start
            "Broadcast 1 was started or cancelled meanwhile.",  # ... or both raced to the end
        }
        assert "Broadcast #1 is on its way to 3 people." in answers
        assert len(answers & refusals) == 1, answers
        assert _count(h, DELIVERIES) == 3
        await h.broadcaster.run_round()
        assert [len(h.standin.chat(u)) for u in USERS] == [1, 1, 1]


async def test_cancel_a_draft(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        await _draft(h, "/broadcast never mind")
        assert await _press(h, bt.CANCEL) == "Broadcast #1 cancelled."
        last = h.standin.last(OP)
        assert last is not None and "cancelled before it was sent" in last.plain
        assert last.buttons == []
        assert await _forge(h, "bc:send:1") == "Broadcast #1 is cancelled: it can't be sent now."
        assert _row(h, 1).status == "cancelled" and _count(h, DELIVERIES) == 0


async def test_a_broadcast_with_nobody_to_send_to_says_so(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h, ())
        _, controls = await _draft(h, "/broadcast anyone?")
        assert "0 people" in controls.plain
        assert await _press(h, bt.SEND) == "Broadcast #1 had nobody to go to, so it is done."
        report = _now(h, controls)
        assert "Broadcast #1 is done" in report.plain and report.buttons == []


# --- /broadcasts ---------------------------------------------------------------------------------


async def test_the_list_pauses_resumes_and_cancels_and_the_progress_follows(
    tmp_path: Path,
) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        _, first = await _draft(h, "/broadcast first " + "long " * 30)
        await _press(h, bt.SEND, message=first)
        await _draft(h, "/broadcast second")  # left a draft
        (listing,) = await h.say("/broadcasts", user_id=OP)
        assert "#2 · draft · “second”" in listing.plain
        assert "#1 · running · “first long" in listing.plain and "sent 0, left 3" in listing.plain
        assert "…" in listing.plain, "long texts are cut short"
        assert _labels(listing) == [f"{bt.CANCEL} #2", f"{bt.PAUSE} #1", f"{bt.CANCEL} #1"]

        assert await _press(h, f"{bt.PAUSE} #1", message=listing) == "Broadcast #1 paused."
        listing = _now(h, listing)
        assert "#1 · paused" in listing.plain
        assert f"{bt.RESUME} #1" in _labels(listing)
        progress = _now(h, first)
        assert "is paused" in progress.plain and _labels(progress) == [bt.RESUME, bt.CANCEL]
        await h.broadcaster.run_round()
        assert all(h.standin.chat(u) == [] for u in USERS), "paused: nothing goes out"

        assert await _press(h, bt.RESUME, message=progress) == "Broadcast #1 resumed."
        await h.broadcaster.run_round()
        assert [len(h.standin.chat(u)) for u in USERS] == [1, 1, 1]

        assert await _press(h, f"{bt.CANCEL} #2", message=listing) == "Broadcast #2 cancelled."
        listing = _now(h, listing)
        assert "#2 · cancelled" in listing.plain and "#1 · done" in listing.plain
        assert listing.buttons == []


async def test_wrong_state_buttons_answer_and_change_nothing(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        await _setup(h)
        await _draft(h, "/broadcast done soon")
        await _press(h, bt.SEND)
        await h.broadcaster.run_round()
        assert _row(h, 1).status == "done"
        before = [m.edits for m in h.standin.chat(OP)]
        assert await _forge(h, "bc:resume:1") == "Broadcast #1 is done: it can't be resumed now."
        assert await _forge(h, "bc:pause:1") == "Broadcast #1 is done: it can't be paused now."
        assert await _forge(h, "bc:list-cancel:1") == (
            "Broadcast #1 is done: it can't be cancelled now."
        )
        assert await _forge(h, "bc:aud:1:kind:sunscreen") == (
            "Broadcast #1 is done: it can't be changed now."
        )
        assert await _forge(h, "bc:time:1") == "Broadcast #1 is done: it can't be changed now."
        assert await _forge(h, "bc:send:99") == "There is no broadcast #99."
        assert await _forge(h, "bc:explode:1") == texts.STALE_BUTTON
        row = _row(h, 1)
        assert (row.status, row.audience, row.local_time) == ("done", "all", None)
        assert [m.edits for m in h.standin.chat(OP)] == before
        await _draft(h, "/broadcast a draft")
        assert await _forge(h, "bc:aud:2:kind:water") == texts.STALE_BUTTON
        assert await _forge(h, "bc:time:2:25:00") == texts.STALE_BUTTON
        assert await _forge(h, "bc:pause:2") == "Broadcast #2 is a draft: it can't be paused now."
        row = _row(h, 2)
        assert (row.status, row.audience, row.local_time) == ("draft", "all", None)
        assert sum(len(h.standin.chat(u)) for u in USERS) == 3


# --- who may --------------------------------------------------------------------------------------


async def test_non_operators_get_the_unknown_command_answer_and_nothing_happens(
    tmp_path: Path, database_url: str
) -> None:
    async with running_bot(tmp_path, database_url=database_url, admin_ids=ADMINS) as h:
        await _setup(h)
        _, draft = await _draft(h, "/broadcast a draft")
        _, running = await _draft(h, "/broadcast a running one")
        await _press(h, bt.SEND, message=running)
        await h.say("/start", user_id=STRANGER)
        sent_id = h.standin.sent_by_users(STRANGER)[-1]["message_id"]
        for command in (
            "/broadcast hi all",
            "/broadcast snippet " + h.guide.snippets[0].id,
            "/broadcast",
            "/broadcasts",
        ):
            (answer,) = await h.say(command, user_id=STRANGER)
            assert answer.plain == parse_html(texts.unknown_command(command.split()[0]))[0]
        (answer,) = await h.say("/broadcast", user_id=STRANGER, reply_to=sent_id)
        assert answer.plain.startswith("I don't know the command /broadcast")
        assert _count(h) == 2

        state = [(r.status, r.audience, r.local_time) for r in (_row(h, 1), _row(h, 2))]
        edits = [m.edits for m in h.standin.chat(OP)]
        data = [
            f"bc:{action}:{broadcast_id}{choice}"
            for broadcast_id in (1, 2, 3)
            for action, choice in (
                ("send", ""),
                ("cancel", ""),
                ("pause", ""),
                ("resume", ""),
                ("back", ""),
                ("aud", ""),
                ("aud", ":kind:sunscreen"),
                ("time", ""),
                ("time", ":10:00"),
                ("time", ":now"),
                ("list-pause", ""),
                ("list-resume", ""),
                ("list-cancel", ""),
            )
        ] + ["bc:", "bc:explode:1", "bc:send:1:x"]
        for forged in data:
            # On their own chat, and on the operator's messages with the operator's ids.
            assert await _forge(h, forged, user_id=STRANGER, chat_id=STRANGER) == texts.STALE_BUTTON
            assert await _forge(h, forged, user_id=STRANGER) == texts.STALE_BUTTON
        after = [(r.status, r.audience, r.local_time) for r in (_row(h, 1), _row(h, 2))]
        assert after == state == [("draft", "all", None), ("running", "all", None)]
        assert [m.edits for m in h.standin.chat(OP)] == edits
        assert draft.message_id in [m.message_id for m in h.standin.chat(OP)]
        assert _count(h, DELIVERIES) == 3
        assert await _forge(h, "bc:send:999999999999") == "There is no broadcast #999999999999."


async def test_operators_have_their_commands_in_their_menu(tmp_path: Path) -> None:
    async with running_bot(tmp_path, admin_ids=ADMINS) as h:
        mine = h.standin.commands_for({"type": "chat", "chat_id": OP})
        assert ("broadcast", bt.OPERATOR_COMMANDS[0].description) in mine
        assert [c for c, _ in mine][: len(texts.COMMANDS)] == [c.command for c in texts.COMMANDS]
        assert "broadcast" not in [c for c, _ in h.standin.commands_for()]
