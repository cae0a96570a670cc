"""The composition root: build the one Application with everything wired in."""

from typing import Any

from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults

from miliabot_tg import texts
from miliabot_tg.handlers import Deps, Handlers

BotApplication = Application[Any, Any, Any, Any, Any, Any]

# Long-poll length: Telegram holds getUpdates open this long when there is nothing new.
POLL_TIMEOUT = 30


def build_application(deps: Deps, token: str) -> BotApplication:
    """Build the bot: HTTP client, defaults, handlers and start-up hooks."""
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{deps.settings.api_url}/bot")
        .base_file_url(f"{deps.settings.api_url}/file/bot")
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        # Users are independent of each other; one slow reply must not hold up the rest.
        .concurrent_updates(True)
        .get_updates_read_timeout(POLL_TIMEOUT + 10)
        .post_init(_post_init)
        .build()
    )
    Handlers(deps).register(app)
    return app


async def _post_init(app: BotApplication) -> None:
    """Publish the command menu so Telegram's '/' button lists our commands."""
    await app.bot.set_my_commands(list(texts.COMMANDS))
