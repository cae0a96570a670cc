"""`miliabot webhook set|delete|info`: manage the webhook with Telegram by hand.

`set` registers MILIABOT_WEBHOOK_URL with MILIABOT_WEBHOOK_SECRET unconditionally (a bot
started in webhook mode registers only when Telegram has something else); `delete`
removes it (the bot can then poll again); `info` prints what Telegram has. Telegram
errors are one line and exit status 69; a rejected token, 78 as for `run`.
"""

import argparse
import asyncio
import sys
from datetime import UTC

from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from miliabot_tg.config import ConfigError, Settings, load_settings
from miliabot_tg.webhook import WebhookSpec, set_webhook

EXIT_UNAVAILABLE = 69


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `webhook set|delete|info` to the `miliabot` command's subparsers."""
    webhook = commands.add_parser(
        "webhook",
        help="register, remove or show the webhook Telegram posts updates to",
        epilog="exit codes: 0 ok, 2 a missing setting, 69 Telegram failed, 78 token rejected",
    )
    actions = webhook.add_subparsers(required=True, metavar="ACTION")
    set_cmd = actions.add_parser(
        "set", help="register MILIABOT_WEBHOOK_URL with MILIABOT_WEBHOOK_SECRET now"
    )
    set_cmd.set_defaults(handler=_set)
    delete = actions.add_parser("delete", help="remove the webhook (polling works again)")
    delete.add_argument(
        "--drop-pending-updates", action="store_true", help="also drop the updates Telegram holds"
    )
    delete.set_defaults(handler=_delete)
    info = actions.add_parser("info", help="show what Telegram has registered")
    info.set_defaults(handler=_info)


def _bot(settings: Settings) -> Bot:
    return Bot(
        settings.token_value(),
        base_url=f"{settings.api_url}/bot",
        base_file_url=f"{settings.api_url}/file/bot",
    )


def _spec(settings: Settings) -> WebhookSpec:
    if settings.webhook_url is None or settings.webhook_secret is None:
        raise ConfigError(
            "MILIABOT_WEBHOOK_URL is not set: set it (and MILIABOT_WEBHOOK_SECRET) to the "
            "public https URL Telegram should post updates to."
        )
    return WebhookSpec(
        url=settings.webhook_url,
        secret=settings.webhook_secret.get_secret_value(),
        max_connections=settings.webhook_max_connections,
    )


def _call(settings: Settings, action: str, drop: bool = False) -> int:
    bot = _bot(settings)

    async def work() -> None:
        async with bot:
            if action == "set":
                spec = _spec(settings)
                await set_webhook(bot, spec)
                print(f"registered the webhook {spec.url}")
            elif action == "delete":
                await bot.delete_webhook(drop_pending_updates=drop)
                dropped = " and dropped the pending updates" if drop else ""
                print(f"deleted the webhook{dropped}; the bot can poll again")
            else:
                info = await bot.get_webhook_info()
                print(f"url: {info.url or '(none: the bot polls)'}")
                print(f"pending updates: {info.pending_update_count}")
                if info.max_connections is not None:
                    print(f"max connections: {info.max_connections}")
                if info.allowed_updates:
                    print(f"allowed updates: {', '.join(info.allowed_updates)}")
                if info.last_error_message:
                    at = info.last_error_date
                    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "?"
                    print(f"last error: {info.last_error_message} (at {when})")

    if action == "set":
        _spec(settings)  # a missing setting is said before Telegram is asked anything
    try:
        asyncio.run(work())
    except InvalidToken:
        raise
    except TelegramError as exc:
        print(f"miliabot: Telegram refused: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


def _set(_args: argparse.Namespace) -> int:
    return _call(load_settings(), "set")


def _delete(args: argparse.Namespace) -> int:
    return _call(load_settings(), "delete", drop=args.drop_pending_updates)


def _info(_args: argparse.Namespace) -> int:
    return _call(load_settings(), "info")
