"""Bare python-telegram-bot behind a webhook: the baseline for `bench.webhook`.

The same replies as miliabot's (the guide's menu, its section and topic views, search
results), built by the same text functions from the same content, and sent by PTB the
same way; but nothing else: no database (no visit recorded), no pacing, no per-chat lanes
or flood guard, no metrics, no logging context. Updates arrive as miliabot's do: an
aiohttp server checks the secret, parses the update and queues it for the Application,
which processes updates concurrently (PTB's own `concurrent_updates`).

So the two runs differ only by what miliabot adds per update; what this one costs is the
floor PTB, httpx and this machine set. Configured by the environment that `bench.webhook`
gives `miliabot run`: MILIABOT_TOKEN, MILIABOT_API_URL, MILIABOT_LISTEN,
MILIABOT_WEBHOOK_URL, MILIABOT_WEBHOOK_SECRET. Prints "taking updates at the webhook"
on stderr when ready; stops on SIGTERM.
"""

import asyncio
import hmac
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from telegram import LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    filters,
)

from miliabot_tg import texts
from miliabot_tg.content import Guide, load_guide
from miliabot_tg.handlers import SEARCH_RESULTS, SUGGESTIONS

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header's name)


async def _sent(send: Callable[[], Awaitable[object]]) -> None:
    """Send; after a 429 wait as told and send again (miliabot's pacer spaces instead)."""
    try:
        await send()
    except RetryAfter as exc:
        await asyncio.sleep(exc.retry_after.total_seconds())  # type: ignore[union-attr]
        await send()


def _handlers(guide: Guide) -> list[Any]:
    async def menu(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        text, keyboard = texts.guide_menu(guide)
        message = update.effective_message
        await _sent(lambda: message.reply_text(text, reply_markup=keyboard))

    async def press(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        assert query.data is not None
        await query.answer()
        shown: tuple[str, Any] | None = None
        if query.data.startswith(texts.CB_SECTION):
            shown = texts.section_view(guide, query.data.removeprefix(texts.CB_SECTION))
        elif query.data.startswith(texts.CB_OPEN):
            snippet = guide.get(query.data.removeprefix(texts.CB_OPEN))
            shown = texts.snippet_view(guide, snippet) if snippet else None
        text, keyboard = shown or texts.guide_menu(guide)
        await query.edit_message_text(text, reply_markup=keyboard)

    async def search(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        assert message.text is not None
        found = guide.find(message.text, limit=SEARCH_RESULTS)
        if found.matches:
            text, keyboard = texts.search_results(message.text, found.matches)
        else:
            text, keyboard = texts.closest_topics(message.text, found.closest[:SUGGESTIONS])
        await _sent(lambda: message.reply_text(text, reply_markup=keyboard))

    return [
        CommandHandler("guide", menu),
        CallbackQueryHandler(press),
        MessageHandler(filters.TEXT & ~filters.COMMAND, search),
    ]


async def _serve(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    secret = os.environ["MILIABOT_WEBHOOK_SECRET"].encode()
    host, port = os.environ["MILIABOT_LISTEN"].rsplit(":", 1)
    path = urlsplit(os.environ["MILIABOT_WEBHOOK_URL"]).path or "/"

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            return web.Response(status=403)
        update = Update.de_json(json.loads(await request.read()), app.bot)
        app.update_queue.put_nowait(update)
        return web.Response(text="ok\n")

    server = web.Application()
    server.router.add_post(path, receive)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app:
        # As PTB's run_webhook does: tell Telegram where to post, with the secret.
        await app.bot.set_webhook(os.environ["MILIABOT_WEBHOOK_URL"], secret_token=secret.decode())
        await app.start()
        print("bare PTB: taking updates at the webhook", file=sys.stderr, flush=True)
        await stop.wait()
        await app.stop()
    await runner.cleanup()


def main() -> None:
    """Run the bare bot until SIGTERM."""
    guide = load_guide(Path(os.environ.get("MILIABOT_CONTENT_DIR", "content")))
    api = os.environ["MILIABOT_API_URL"]
    app = (
        ApplicationBuilder()
        .token(os.environ["MILIABOT_TOKEN"])
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        .concurrent_updates(True)
        .updater(None)
        .build()
    )
    app.add_handlers(_handlers(guide))
    asyncio.run(_serve(app))


if __name__ == "__main__":
    main()
