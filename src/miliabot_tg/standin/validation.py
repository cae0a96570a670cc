"""Telegram's checks on what a bot sends: texts with their entities, keyboards, commands.

Each check returns what Telegram would keep or raises the 400 ``ApiError`` Telegram would
answer. The HTML parser itself lives in ``miliabot_tg.telegram_html``.
"""

from __future__ import annotations

import re
from typing import Final

from miliabot_tg.standin.records import JSON, bad
from miliabot_tg.telegram_html import EntityParseError, parse_html, utf16_len

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64
CHAT_ACTIONS: Final = frozenset(
    (
        "typing upload_photo record_video upload_video record_voice upload_voice "
        "upload_document choose_sticker find_location record_video_note upload_video_note"
    ).split()
)
_BOT_COMMAND_RE: Final = re.compile(r"[a-z0-9_]{1,32}")


# --- texts ------------------------------------------------------------------------------------


def _strip(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Trim surrounding whitespace like Telegram does, keeping entity offsets right."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    end = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        stop = min(entity["offset"] + entity["length"] - lead, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


def render(text: str, parse_mode: str | None, entities: object = None) -> tuple[str, list[JSON]]:
    """What Telegram would show: plain text plus entities, or a 400 ApiError."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        try:
            plain, found = parse_html(text)
        except EntityParseError as err:
            raise bad(f"can't parse entities: {err}") from None
        return _strip(plain, found)
    if mode not in ("", "markdown", "markdownv2"):
        raise bad("unsupported parse_mode")
    given = [e for e in entities if isinstance(e, dict)] if isinstance(entities, list) else []
    return _strip(text, given)


def message_text(params: JSON, key: str, limit: int) -> tuple[str, list[JSON]]:
    """The rendered ``text`` or ``caption`` (``key``) of a call, checked against ``limit``."""
    text = params.get(key)
    parse_mode = params.get("parse_mode")
    if not isinstance(text, str):
        raise bad("message text is empty")
    entities = params.get("entities" if key == "text" else "caption_entities")
    plain, found = render(text, parse_mode if isinstance(parse_mode, str) else None, entities)
    if key == "text" and not plain:
        raise bad("message text is empty")
    if len(plain) > limit:
        raise bad("message is too long" if key == "text" else "message caption is too long")
    return plain, found


# --- reply markup -----------------------------------------------------------------------------

_BUTTON_ACTIONS: Final = frozenset(
    (
        "url callback_data web_app login_url switch_inline_query "
        "switch_inline_query_current_chat switch_inline_query_chosen_chat copy_text "
        "callback_game pay"
    ).split()
)


def check_markup(markup: object, *, inline_only: bool = False) -> JSON | None:
    """Validate reply_markup like Telegram; returns it (None when absent)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        if inline_only or not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
            raise bad("can't parse inline keyboard markup JSON object")
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad('can\'t parse inline keyboard button: Field "inline_keyboard" must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad('can\'t parse inline keyboard button: Field "text" must be a String')
            if not button["text"]:
                raise bad("BUTTON_TEXT_INVALID")
            if not _BUTTON_ACTIONS & button.keys():
                raise bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and (
                not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
            ):
                raise bad("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and (
                not isinstance(url, str)
                or not url.startswith(("http://", "https://", "tg://"))
                or any(c.isspace() for c in url)
            ):
                raise bad(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
    return markup


# --- commands ---------------------------------------------------------------------------------


def check_commands(given: object) -> list[tuple[str, str]]:
    """The (command, description) pairs of a setMyCommands call."""
    if not isinstance(given, list):
        raise bad("can't parse commands JSON object")
    if len(given) > 100:
        raise bad("BOT_COMMANDS_TOO_MUCH")
    commands = []
    for item in given:
        name = item.get("command") if isinstance(item, dict) else None
        description = item.get("description") if isinstance(item, dict) else None
        if not isinstance(name, str) or not _BOT_COMMAND_RE.fullmatch(name):
            raise bad("BOT_COMMAND_INVALID")
        if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
            raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
        commands.append((name, description))
    return commands
