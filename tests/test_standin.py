"""The Telegram stand-in, proven with the real python-telegram-bot client and Application."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, Update
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)
from telegram.request import HTTPXRequest

from miliabot_tg.standin import (
    DEFAULT_TOKEN,
    NOT_MODIFIED,
    AnsweredCallback,
    ButtonNotFoundError,
    StandIn,
    Upload,
    parse_html,
)

ANN = 1001  # the default simulated user, whose private chat id is the same

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in buttons]])


def make_bot(standin: StandIn, **request: Any) -> Bot:
    return Bot(DEFAULT_TOKEN, base_url=f"{standin.api_root}/bot", request=HTTPXRequest(**request))


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with StandIn(global_rate=None, chat_rate=None) as server:
        yield server


@pytest.fixture
async def bot(standin: StandIn) -> AsyncIterator[Bot]:
    async with make_bot(standin) as client:
        yield client


@pytest.fixture
def timedelta_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns on RetryAfter.retry_after unless PTB_TIMEDELTA opts into timedeltas."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


# --- a tiny bot for the end-to-end tests --------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        f"<b>Welcome</b>, args={context.args}",
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard(("Next", "page:2")),
    )


async def burst(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    await update.effective_chat.send_action("typing")
    for n in range(3):
        await update.effective_chat.send_message(f"part {n}")


async def turn_page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    assert query.data is not None
    page = query.data.removeprefix("page:")
    await query.answer(f"Page {page}")
    back = "1" if page == "2" else "2"
    await query.edit_message_text(
        f"<i>Page {page}</i>", parse_mode=ParseMode.HTML, reply_markup=keyboard(("Flip", back))
    )


@asynccontextmanager
async def running(
    standin: StandIn, *handlers: BaseHandler[Any, Any, Any]
) -> AsyncIterator[AnyApplication]:
    """The real Application, long-polling the stand-in; handler errors fail the test."""
    app = ApplicationBuilder().token(DEFAULT_TOKEN).base_url(f"{standin.api_root}/bot").build()
    app.add_handlers(handlers)
    errors: list[object] = []

    async def record_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        errors.append(context.error)

    app.add_error_handler(record_error)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=10)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert errors == []


# --- end to end with the real Application -------------------------------------------------------


async def test_application_answers_a_command_end_to_end(standin: StandIn) -> None:
    async with running(standin, CommandHandler("start", start)):
        standin.send_message("/start promo")
        reply = await standin.wait_for(lambda: standin.last(ANN))
    assert reply.plain == "Welcome, args=['promo']"
    assert reply.text == "<b>Welcome</b>, args=['promo']"
    assert reply.parse_mode == "HTML"
    assert reply.buttons == [[("Next", "page:2")]]
    assert [c.method for c in standin.calls if c.method != "getUpdates"][:2] == [
        "getMe",
        "deleteWebhook",
    ]
    # PTB confirmed the update it fetched when it stopped polling.
    assert standin.pending_updates == 0


async def test_button_press_round_trips_and_edits_the_message_in_place(standin: StandIn) -> None:
    async with running(standin, CommandHandler("start", start), CallbackQueryHandler(turn_page)):
        standin.send_message("/start")
        first = await standin.wait_for(lambda: standin.last(ANN))
        standin.press(ANN, "Next")
        await standin.wait_for(lambda: first.edits == 1)
        assert first.plain == "Page 2"
        assert first.buttons == [[("Flip", "1")]]
        standin.press_button(ANN, first.message_id, "1")
        await standin.wait_for(lambda: first.edits == 2)
    assert first.plain == "Page 1"
    assert len(standin.chat(ANN)) == 1
    assert [(a.text, a.show_alert) for a in standin.answered_callbacks] == [
        ("Page 2", False),
        ("Page 1", False),
    ]


async def test_long_poll_of_the_application_wakes_promptly(standin: StandIn) -> None:
    async with running(standin, CommandHandler("start", start)):
        await standin.wait_for(lambda: standin.waiting_polls == 1)
        sent_at = time.monotonic()
        standin.send_message("/start")
        await standin.wait_for(lambda: standin.last(ANN))
        latency = time.monotonic() - sent_at
    assert latency < 0.5  # the poll's timeout is 10 s


async def test_settle_returns_once_the_bot_has_finished_answering(standin: StandIn) -> None:
    standin.delay("sendMessage", 0.02)  # a slow reply must not look like "finished"
    async with running(standin, CommandHandler("burst", burst)):
        standin.send_message("/burst")
        await standin.settle(quiet=0.05)
        assert [m.text for m in standin.chat(ANN)] == ["part 0", "part 1", "part 2"]
        before = len(standin.calls)
        await standin.settle()  # already quiet: returns without new calls
        assert all(c.method == "getUpdates" for c in standin.calls[before:])


# --- getUpdates ---------------------------------------------------------------------------------


async def test_get_updates_offset_confirms_and_negative_offset_keeps_the_tail(
    standin: StandIn, bot: Bot
) -> None:
    ids = [standin.send_message(f"m{n}") for n in range(4)]
    assert [u.update_id for u in await bot.get_updates()] == ids
    assert [u.update_id for u in await bot.get_updates(offset=ids[1] + 1, limit=1)] == [ids[2]]
    assert standin.pending_updates == 2
    assert [u.update_id for u in await bot.get_updates(offset=-1)] == [ids[3]]
    assert [u.update_id for u in await bot.get_updates()] == [ids[3]]
    assert await bot.get_updates(offset=ids[3] + 1) == ()
    assert standin.pending_updates == 0


async def test_long_poll_returns_as_soon_as_an_update_is_queued(standin: StandIn, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await standin.wait_for(lambda: standin.waiting_polls == 1)
    sent_at = time.monotonic()
    update_id = standin.send_message("hello")
    updates = await asyncio.wait_for(poll, timeout=2)
    assert time.monotonic() - sent_at < 0.5
    assert [u.update_id for u in updates] == [update_id]


async def test_allowed_updates_filters_update_kinds(standin: StandIn, bot: Bot) -> None:
    sent = await bot.send_message(ANN, "pick", reply_markup=keyboard(("A", "a")))
    standin.send_message("text")
    pressed = standin.press_button(ANN, sent.message_id, "a")
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.update_id for u in updates] == [pressed]


async def test_a_second_poller_terminates_the_first_with_conflict(standin: StandIn) -> None:
    async with make_bot(standin) as first, make_bot(standin) as second:
        waiting = asyncio.create_task(first.get_updates(timeout=10))
        await standin.wait_for(lambda: standin.waiting_polls == 1)
        taking_over = asyncio.create_task(second.get_updates(timeout=10))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await waiting
        update_id = standin.send_message("for the survivor")
        assert [u.update_id for u in await taking_over] == [update_id]


async def test_webhook_makes_get_updates_conflict_until_deleted(standin: StandIn, bot: Bot) -> None:
    waiting = asyncio.create_task(bot.get_updates(timeout=10))
    await standin.wait_for(lambda: standin.waiting_polls == 1)
    assert await bot.set_webhook("https://example.org/hook")
    standin.send_message("queued, but nobody may fetch it")
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await waiting
    with pytest.raises(Conflict, match="use deleteWebhook to delete the webhook first"):
        await bot.get_updates()
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == ("https://example.org/hook", 1)
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == ()
    assert (await bot.get_webhook_info()).url == ""
    with pytest.raises(BadRequest, match=r"(?i)an https url must be provided"):
        await bot.set_webhook("http://example.org/hook")


# --- sending and validation ---------------------------------------------------------------------


async def test_get_me_reports_the_bot_behind_the_token(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "miliabot_test_bot")


async def test_wrong_token_is_unauthorized(standin: StandIn) -> None:
    impostor = Bot("123456:wrong-secret", base_url=f"{standin.api_root}/bot")
    try:
        with pytest.raises(InvalidToken):
            await impostor.initialize()
    finally:
        await impostor.shutdown()
    assert standin.calls[-1].status == 401


async def test_send_message_returns_a_full_message_with_per_chat_ids(
    standin: StandIn, bot: Bot
) -> None:
    standin.send_message("hi", user_id=7)  # user messages take ids in the same sequence
    one = await bot.send_message(7, "one")
    two = await bot.send_message(7, "two")
    elsewhere = await bot.send_message(8, "three")
    assert [one.message_id, two.message_id, elsewhere.message_id] == [2, 3, 1]
    assert one.from_user is not None
    assert one.from_user.id == bot.id
    assert (one.chat.id, one.chat.type, one.text) == (7, "private", "one")
    assert isinstance(one.date, dtm.datetime)
    assert [m.text for m in standin.chat(7)] == ["one", "two"]


async def test_errors_have_telegrams_json_shape_and_status(standin: StandIn) -> None:
    api = f"/bot{DEFAULT_TOKEN}"
    async with httpx.AsyncClient(base_url=standin.api_root) as client:
        empty = await client.post(f"{api}/sendMessage", json={"chat_id": ANN, "text": ""})
        html = await client.post(
            f"{api}/sendMessage", json={"chat_id": ANN, "text": "<div>", "parse_mode": "HTML"}
        )
        unknown = await client.post(f"{api}/sendSticker")
        stranger = await client.get("/robots.txt")
        standin.fail_next(status=429, retry_after=3)
        flooded = await client.post(
            f"{api}/sendChatAction", data={"chat_id": 1, "action": "typing"}
        )
        lowercase = await client.post(f"{api}/sendmessage", data={"chat_id": 1, "text": "ok"})
    assert (empty.status_code, empty.json()) == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
    )
    assert html.json()["description"] == (
        'Bad Request: can\'t parse entities: Unsupported start tag "div" at byte offset 0'
    )
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")
    assert stranger.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert flooded.status_code == 429
    assert flooded.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    assert lowercase.json()["ok"] is True
    assert standin.calls[-1].method == "sendMessage"


@pytest.mark.parametrize("encoding", ["json", "urlencoded", "multipart", "query"])
async def test_parameters_are_read_from_every_encoding(standin: StandIn, encoding: str) -> None:
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    fields = {
        "chat_id": "1001",
        "text": "hi",
        "reply_markup": json.dumps(markup),
        "disable_notification": "true",
    }
    url = f"/bot{DEFAULT_TOKEN}/sendMessage"
    async with httpx.AsyncClient(base_url=standin.api_root) as client:
        if encoding == "json":
            response = await client.post(url, json=fields)
        elif encoding == "urlencoded":
            response = await client.post(url, data=fields)
        elif encoding == "multipart":
            response = await client.post(url, data=fields, files={"extra": ("x.bin", b"\0")})
        else:
            response = await client.get(url, params=fields)
    assert response.json()["ok"] is True
    params = standin.calls[-1].params
    assert {key: params[key] for key in fields} == {
        "chat_id": ANN,
        "text": "hi",
        "reply_markup": markup,
        "disable_notification": True,
    }
    last = standin.last(ANN)
    assert last is not None
    assert last.buttons == [[("Go", "go")]]


@pytest.mark.parametrize(
    ("source", "plain", "entities"),
    [
        ("<b>Hi</b> &amp; &lt;3", "Hi & <3", [{"offset": 0, "length": 2, "type": "bold"}]),
        ("Q&A, R&D & co", "Q&A, R&D & co", []),  # a bare "&" is text, as on Telegram
        (
            '<a href="https://x.org">x</a><tg-spoiler>s</tg-spoiler>',
            "xs",
            [
                {"offset": 0, "length": 1, "type": "text_link", "url": "https://x.org"},
                {"offset": 1, "length": 1, "type": "spoiler"},
            ],
        ),
        (
            '😀<pre><code class="language-python">x = 1</code></pre>',
            "😀x = 1",
            [{"offset": 2, "length": 5, "type": "pre", "language": "python"}],
        ),
        (
            '<blockquote expandable>q</blockquote><span class="tg-spoiler">&#128512;</span>',
            "q😀",
            [
                {"offset": 0, "length": 1, "type": "expandable_blockquote"},
                {"offset": 1, "length": 2, "type": "spoiler"},
            ],
        ),
        (
            '<b>bold <i>both</i></b> <tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>',
            "bold both 👍",
            [
                {"offset": 0, "length": 9, "type": "bold"},
                {"offset": 5, "length": 4, "type": "italic"},
                {
                    "offset": 10,
                    "length": 2,
                    "type": "custom_emoji",
                    "custom_emoji_id": "5368324170671202286",
                },
            ],
        ),
    ],
)
def test_html_parses_to_telegram_text_and_utf16_entities(
    source: str, plain: str, entities: list[dict[str, Any]]
) -> None:
    assert parse_html(source) == (plain, entities)


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<div>x</div>", 'unsupported start tag "div" at byte offset 0'),
        ("é <br>", 'unsupported start tag "br" at byte offset 3'),
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "unexpected end tag at byte offset 1"),
        ("a&nbsp;b", 'unsupported html entity "&nbsp;" at byte offset 1'),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ('<span class="x">y</span>', 'tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_invalid_html_is_rejected_like_telegram(bot: Bot, html: str, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ANN, html, parse_mode=ParseMode.HTML)
    # PTB strips "Bad Request: " and capitalize()s the rest, lowercasing it.
    assert caught.value.message == f"Can't parse entities: {reason}"


async def test_text_limits_count_after_entity_parsing(standin: StandIn, bot: Bot) -> None:
    longest = await bot.send_message(ANN, f"<b>{'x' * 4096}</b>", parse_mode=ParseMode.HTML)
    assert longest.text == "x" * 4096
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ANN, "x" * 4097)
    for empty in ("", "  \n ", "<b> </b>"):
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(ANN, empty, parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(ANN, "AgACfileid", caption="c" * 1025)
    assert len(standin.chat(ANN)) == 1


async def test_callback_data_over_64_bytes_is_rejected(standin: StandIn, bot: Bot) -> None:
    await bot.send_message(ANN, "fits", reply_markup=keyboard(("A", "é" * 32)))  # 64 bytes
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ANN, "too long", reply_markup=keyboard(("A", "é" * 32 + "x")))
    assert caught.value.message.upper() == "BUTTON_DATA_INVALID"
    assert [m.text for m in standin.chat(ANN)] == ["fits"]


async def test_edits_replace_the_message_in_place(standin: StandIn, bot: Bot) -> None:
    sent = await bot.send_message(ANN, "v1", reply_markup=keyboard(("Next", "next")))
    edited = await bot.edit_message_text(
        "<i>v2</i>",
        chat_id=ANN,
        message_id=sent.message_id,
        parse_mode=ParseMode.HTML,
        reply_markup=keyboard(("Next", "next")),
    )
    assert isinstance(edited, Message)
    assert (edited.text, edited.message_id) == ("v2", sent.message_id)
    assert edited.edit_date is not None
    (current,) = standin.chat(ANN)
    assert (current.text, current.plain, current.edits) == ("<i>v2</i>", "v2", 1)
    await bot.edit_message_reply_markup(ANN, sent.message_id, reply_markup=keyboard(("B", "b")))
    assert (current.buttons, current.edits) == ([[("B", "b")]], 2)
    await bot.edit_message_text("v3", chat_id=ANN, message_id=sent.message_id)
    assert current.reply_markup is None  # like Telegram: an edit without markup drops it


async def test_identical_edits_and_unknown_messages_are_refused(bot: Bot) -> None:
    sent = await bot.send_message(ANN, "same", reply_markup=keyboard(("A", "a")))
    with pytest.raises(BadRequest) as caught:
        await bot.edit_message_text("same", ANN, sent.message_id, reply_markup=keyboard(("A", "a")))
    assert caught.value.message == NOT_MODIFIED.removeprefix("Bad Request: ").capitalize()
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(ANN, sent.message_id, reply_markup=keyboard(("A", "a")))
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("new", chat_id=ANN, message_id=999)
    photo = await bot.send_photo(ANN, "AgACfileid")
    with pytest.raises(BadRequest, match="There is no text in the message to edit"):
        await bot.edit_message_text("new", chat_id=ANN, message_id=photo.message_id)


async def test_delete_flags_the_message_and_refuses_a_second_time(
    standin: StandIn, bot: Bot
) -> None:
    sent = await bot.send_message(ANN, "bye")
    assert await bot.delete_message(ANN, sent.message_id)
    assert standin.chat(ANN)[0].deleted
    assert standin.last(ANN) is None
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(ANN, sent.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("back?", chat_id=ANN, message_id=sent.message_id)


async def test_pressed_buttons_must_exist_on_the_current_message(
    standin: StandIn, bot: Bot
) -> None:
    sent = await bot.send_message(ANN, "pick", reply_markup=keyboard(("A", "a")))
    with pytest.raises(ButtonNotFoundError, match="'b'"):
        standin.press_button(ANN, sent.message_id, "b")
    await bot.edit_message_reply_markup(ANN, sent.message_id, reply_markup=keyboard(("B", "b")))
    with pytest.raises(ButtonNotFoundError, match=r"its buttons now: \[\[\('B', 'b'\)\]\]"):
        standin.press_button(ANN, sent.message_id, "a")
    with pytest.raises(ButtonNotFoundError, match="no callback button 'A'"):
        standin.press(ANN, "A")
    update_id = standin.press(ANN, "B")
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert update.update_id == update_id
    assert query is not None
    assert (query.data, query.from_user.id) == ("b", ANN)
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="done", show_alert=True)
    assert standin.answered_callbacks == [AnsweredCallback(query.id, "done", True)]
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query.id)  # answered already
    with pytest.raises(BadRequest, match="query id is invalid"):
        await bot.answer_callback_query("made-up")


async def test_simulated_users_produce_telegram_updates(standin: StandIn, bot: Bot) -> None:
    standin.send_message("/start@miliabot_test_bot deep", user_id=7, username="bo")
    standin.send_message("hi /guide", user_id=8, chat_id=-100123, chat_type="supergroup")
    standin.send_message("news", chat_id=-100999, chat_type="channel", chat_title="News")
    standin.send_location(52.5, 13.4, user_id=7, first_name="Bo")
    command, group, channel, location = await bot.get_updates()
    assert command.message is not None
    assert command.message.from_user is not None
    assert command.message.from_user.username == "bo"
    assert command.message.parse_entities(["bot_command"]).popitem()[1] == (
        "/start@miliabot_test_bot"
    )
    assert group.message is not None
    assert group.message.chat.type == "supergroup"
    assert [(e.offset, e.length) for e in group.message.entities] == [(3, 6)]
    assert channel.message is None
    assert channel.channel_post is not None
    assert channel.channel_post.chat.title == "News"
    assert location.message is not None
    assert location.message.location is not None
    assert location.message.location.latitude == 52.5
    assert location.message.message_id == 2  # the second message in Bo's chat


async def test_photos_by_file_id_url_and_upload(standin: StandIn, bot: Bot) -> None:
    by_id = await bot.send_photo(ANN, "AgACfileid", caption="<b>Look</b>", parse_mode="HTML")
    await bot.send_photo(ANN, "https://example.org/skin.jpg")
    await bot.send_photo(ANN, b"\x89PNG fake", filename="skin.png")
    assert by_id.photo[-1].file_id == "AgACfileid"
    assert by_id.caption == "Look"
    assert by_id.caption_entities[0].type == "bold"
    by_id_state, by_url, uploaded = standin.chat(ANN)
    assert [by_id_state.photo, by_url.photo, uploaded.photo] == [
        "AgACfileid",
        "https://example.org/skin.jpg",
        "upload:skin.png",
    ]
    assert by_id_state.caption == "<b>Look</b>"
    assert uploaded.photo_data == b"\x89PNG fake"
    assert isinstance(standin.calls_to("sendPhoto")[-1].params["photo"], Upload)
    with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
        await bot.send_photo(ANN, "not a file id")


async def test_commands_are_set_read_and_deleted(standin: StandIn, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "Start"), ("guide", "The guide")])
    assert standin.commands == [("start", "Start"), ("guide", "The guide")]
    assert [(c.command, c.description) for c in await bot.get_my_commands()] == standin.commands
    assert await bot.set_my_commands([("hilfe", "Hilfe")], language_code="de")
    assert standin.commands_for(language_code="de") == [("hilfe", "Hilfe")]
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest) as caught:
        await bot.set_my_commands([("Not Valid", "x")])
    assert caught.value.message.upper() == "BOT_COMMAND_INVALID"


async def test_chat_action_close_and_log_out(standin: StandIn, bot: Bot) -> None:
    assert await bot.send_chat_action(ANN, "typing")
    with pytest.raises(BadRequest, match="Wrong parameter action in request"):
        await bot.send_chat_action(ANN, "dancing")
    assert await bot.close()
    assert await bot.log_out()
    assert [c.method for c in standin.calls[-2:]] == ["close", "logOut"]


# --- misbehaving on demand ----------------------------------------------------------------------


async def test_blocked_and_forgotten_chats_fail_like_telegram(standin: StandIn, bot: Bot) -> None:
    standin.block(ANN)
    with pytest.raises(Forbidden, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(ANN, "hello?")
    standin.unblock(ANN)
    await bot.send_message(ANN, "hello again")
    standin.block(-42)
    with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
        await bot.send_message(-42, "hi group")
    standin.block(7)
    standin.send_message("I'm back", user_id=7)  # writing to the bot means unblocking it
    await bot.send_message(7, "welcome back")
    standin.forget(8)
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(8, "anyone?")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_chat_action(8, "typing")
    assert [m.text for m in standin.chat(ANN)] == ["hello again"]


async def test_fail_next_fails_exactly_the_next_calls(
    standin: StandIn, bot: Bot, timedelta_periods: None
) -> None:
    standin.fail_next("sendMessage", status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(ANN, "a")
    standin.fail_next(status=429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_chat_action(ANN, "typing")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    standin.fail_next("sendPhoto")
    standin.fail_next("sendMessage", count=2, description="Internal Server Error: try later")
    for _ in range(2):
        with pytest.raises(NetworkError, match="try later"):
            await bot.send_message(ANN, "b")
    assert (await bot.send_message(ANN, "c")).text == "c"
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_photo(ANN, "AgACfileid")
    assert [m.text for m in standin.chat(ANN)] == ["c"]
    assert [c.status for c in standin.calls_to("sendMessage")] == [502, 500, 500, 200]
    with pytest.raises(ValueError, match="no method 'sendMesage'"):
        standin.fail_next("sendMesage")


async def test_hung_call_times_out_the_client_then_service_resumes(standin: StandIn) -> None:
    standin.hang_next("sendMessage")
    async with make_bot(standin, read_timeout=0.2) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(ANN, "lost")
        await standin.settle()  # the client gave up, so nothing is in flight any more
        assert (await impatient.send_message(ANN, "delivered")).text == "delivered"
    assert [c.status for c in standin.calls_to("sendMessage")] == [None, 200]
    assert [m.text for m in standin.chat(ANN)] == ["delivered"]


async def test_delay_slows_only_the_chosen_method(standin: StandIn, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    standin.delay("sendMessage", 0.25)
    began = loop.time()
    await bot.send_message(ANN, "slow")
    slow = loop.time() - began
    began = loop.time()
    await bot.send_chat_action(ANN, "typing")
    fast = loop.time() - began
    assert slow >= 0.25 > fast


async def test_stop_releases_long_polls_and_hung_calls_promptly() -> None:
    standin = StandIn()
    await standin.start()
    async with make_bot(standin) as client:
        standin.hang_next("sendMessage")
        poll = asyncio.create_task(client.get_updates(timeout=30))
        hung = asyncio.create_task(client.send_message(ANN, "never answered"))
        await standin.wait_for(
            lambda: standin.waiting_polls == 1 and len(standin.calls_to("sendMessage")) == 1
        )
        began = time.monotonic()
        await standin.stop()
        poll_result, hung_result = await asyncio.gather(poll, hung, return_exceptions=True)
        assert time.monotonic() - began < 1.0
    assert poll_result == ()
    assert isinstance(hung_result, NetworkError)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_wait_for_timeout_lists_the_recent_calls(standin: StandIn, bot: Bot) -> None:
    await bot.send_message(ANN, "only this")
    with pytest.raises(TimeoutError, match=r"sendMessage\(chat_id=1001, text='only this'\) -> 200"):
        await standin.wait_for(lambda: standin.last(2002), timeout=0.05)


# --- rate limits --------------------------------------------------------------------------------


async def test_global_rate_limit_refuses_with_retry_after_from_the_window(
    timedelta_periods: None,
) -> None:
    clock = FakeClock()
    async with (
        StandIn(global_rate=2, chat_rate=None, clock=clock) as standin,
        make_bot(standin) as bot,
    ):
        await bot.send_message(1, "t=0")
        clock.now += 0.6
        await bot.send_message(2, "t=0.6")
        clock.now += 0.3
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(3, "t=0.9")
        assert caught.value.retry_after == dtm.timedelta(seconds=1)
        assert standin.calls[-1].response == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert standin.chat(3) == []  # not delivered
        clock.now += 0.2  # t=1.1: the t=0 send left the sliding window
        await bot.send_message(3, "t=1.1")
        with pytest.raises(RetryAfter):
            await bot.send_message(4, "t=1.1 again")
        await bot.edit_message_text("edits are free", chat_id=3, message_id=1)
        standin.global_rate = None
        await bot.send_message(4, "unlimited")
        assert standin.rate_limited == 2


async def test_paid_sends_of_every_kind_skip_the_free_global_limit(
    timedelta_periods: None,
) -> None:
    clock = FakeClock()
    async with (
        StandIn(global_rate=1, chat_rate=None, clock=clock) as standin,
        make_bot(standin) as bot,
    ):
        await bot.send_message(1, "uses the one free slot")
        with pytest.raises(RetryAfter):
            await bot.send_photo(2, "AgACfileid")  # free: over the limit
        # Paid (allow_paid_broadcast): a limit of their own, for photos and documents too.
        await bot.send_message(3, "paid", allow_paid_broadcast=True)
        await bot.send_photo(4, "AgACfileid", allow_paid_broadcast=True)
        await bot.send_document(5, InputFile(b"data", filename="a.json"), allow_paid_broadcast=True)
        assert [len(standin.chat(c)) for c in (2, 3, 4, 5)] == [0, 1, 1, 1]
        assert standin.rate_limited == 1


async def test_chat_rate_limit_is_per_chat(timedelta_periods: None) -> None:
    clock = FakeClock()
    async with (
        StandIn(global_rate=None, chat_rate=0.25, clock=clock) as standin,  # one per 4 s
        make_bot(standin) as bot,
    ):
        await bot.send_message(ANN, "first")
        clock.now += 1.5
        with pytest.raises(RetryAfter) as caught:
            await bot.send_photo(ANN, "AgACfileid")
        assert caught.value.retry_after == dtm.timedelta(seconds=3)
        await bot.send_message(2002, "another chat is fine")
        clock.now += 2.5
        await bot.send_photo(ANN, "AgACfileid")
        assert [m.plain or m.photo for m in standin.chat(ANN)] == ["first", "AgACfileid"]
        assert standin.rate_limited == 1


async def test_default_rate_limits_allow_one_message_per_second_per_chat(
    timedelta_periods: None,
) -> None:
    clock = FakeClock()
    async with StandIn(clock=clock) as standin, make_bot(standin) as bot:
        await bot.send_message(ANN, "one")
        with pytest.raises(RetryAfter):
            await bot.send_message(ANN, "two")
        for chat in range(1, 30):
            await bot.send_message(chat, "fan-out")
        with pytest.raises(RetryAfter):
            await bot.send_message(31, "31st in one second")
        clock.now += 1.0
        await bot.send_message(ANN, "two")


# --- users' formatting, photos, replies, copies and forged presses -------------------------------


async def test_users_send_formatting_photos_and_replies(standin: StandIn, bot: Bot) -> None:
    plain, entities = parse_html("/broadcast 🎉 <b>big</b> <a href='https://x.org'>news</a>")
    standin.send_message(plain, entities=entities)
    standin.send_photo("🎉 look", caption_entities=[{"type": "italic", "offset": 3, "length": 4}])
    sent = await bot.send_message(ANN, "question?")
    standin.send_message("/broadcast", reply_to=2)  # the photo
    standin.send_message("answer", reply_to=sent.message_id)
    text, photo, reply, answer = [u.message for u in await bot.get_updates()]
    assert text is not None and photo is not None and reply is not None and answer is not None
    assert [e.type for e in text.entities] == ["bot_command", "bold", "text_link"]
    assert text.text_html == plain.replace("big", "<b>big</b>").replace(
        "news", '<a href="https://x.org">news</a>'
    )
    assert photo.photo[-1].width == 1280
    assert [m["message_id"] for m in standin.sent_by_users(ANN)] == [1, 2, 4, 5]
    assert photo.caption_html == "🎉 <i>look</i>", "UTF-16 offsets: the emoji counts two"
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == photo.message_id
    assert reply.reply_to_message.caption == photo.caption
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "question?"
    with pytest.raises(ValueError, match="no message 99"):
        standin.send_message("x", reply_to=99)


async def test_copy_message_copies_users_and_bots_messages(standin: StandIn, bot: Bot) -> None:
    plain, entities = parse_html("<b>Hello</b> 🌍 <i>world</i>")
    standin.send_message(plain, entities=entities)
    standin.send_photo("cap", caption_entities=[{"type": "bold", "offset": 0, "length": 3}])
    own = await bot.send_message(ANN, "<u>mine</u>", parse_mode="HTML")
    await bot.get_updates()
    to = 2002
    standin.send_message("hi", user_id=to)
    copied = await bot.copy_message(to, ANN, 1, reply_markup=keyboard(("Off", "ann:off")))
    await bot.copy_message(to, ANN, 2)
    await bot.copy_message(to, ANN, own.message_id)
    await bot.copy_message(to, ANN, 2, caption="<b>new</b>", parse_mode="HTML")
    text, photo, mine, recaptioned = standin.chat(to)
    assert copied.message_id == text.message_id
    assert (text.plain, text.entities) == (plain, entities)
    assert text.buttons == [[("Off", "ann:off")]]
    assert photo.photo is not None and photo.photo.startswith("AgACAgIAAxkBAAI-user-")
    assert (photo.plain, photo.entities[0]["type"]) == ("cap", "bold")
    assert (mine.plain, mine.entities[0]["type"]) == ("mine", "underline")
    assert (recaptioned.plain, recaptioned.entities[0]["type"]) == ("new", "bold")
    with pytest.raises(BadRequest, match="Message to copy not found"):
        await bot.copy_message(to, ANN, 77)
    await bot.delete_message(ANN, 1)  # the user's own message, deleted
    with pytest.raises(BadRequest, match="Message to copy not found"):
        await bot.copy_message(to, ANN, 1)
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.copy_message(to, 555, 1)


async def test_forged_presses_carry_any_data_on_a_real_message(standin: StandIn, bot: Bot) -> None:
    await bot.send_message(ANN, "no buttons here")
    with pytest.raises(ButtonNotFoundError):
        standin.press(ANN, "Send")
    standin.forge_press(ANN, "bc:send:42", user_id=3003)
    (update,) = await bot.get_updates()
    assert update.callback_query is not None
    assert update.callback_query.data == "bc:send:42"
    assert update.callback_query.from_user.id == 3003
    assert update.callback_query.message is not None
    assert update.callback_query.message.message_id == 1
    with pytest.raises(ButtonNotFoundError):
        standin.forge_press(4004, "bc:send:1")
