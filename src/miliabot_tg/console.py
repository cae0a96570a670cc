"""Chat with the real bot in a terminal: the real Application against the in-process stand-in."""

import asyncio
import logging
import re
import sys
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import TextIO

from telegram import Update
from telegram.ext import TypeHandler

from miliabot_tg.app import BotApplication, build_application
from miliabot_tg.config import Settings
from miliabot_tg.content import load_guide
from miliabot_tg.db import ensure_schema, make_engine
from miliabot_tg.handlers import Deps, Visits
from miliabot_tg.logs import setup_logging
from miliabot_tg.models import utcnow
from miliabot_tg.schedule import ascii_digits
from miliabot_tg.standin import DEFAULT_TOKEN, BotMessage, StandIn

CONSOLE_USER_ID = 1001
CONSOLE_USER_NAME = "Friend"
CONSOLE_DATABASE = "sqlite:///data/console.sqlite3"
PROMPT = "you> "


def run_console(settings: Settings, *, database_url: str | None) -> int:
    """Run a console session on standard input and output; return the exit status."""
    setup_logging(level=logging.WARNING)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    return asyncio.run(
        chat_in_console(
            settings,
            database_url=database_url or CONSOLE_DATABASE,
            lines=sys.stdin,
            out=sys.stdout,
            interactive=interactive,
        )
    )


async def chat_in_console(
    settings: Settings, *, database_url: str, lines: TextIO, out: TextIO, interactive: bool
) -> int:
    """Feed each line to the bot as the user's message and print what the bot answers.

    A line that is only a number presses that numbered button of the latest message.
    """
    guide = load_guide(settings.content_dir)
    engine = make_engine(database_url)
    ensure_schema(engine, auto_migrate=True)
    # The console is one person typing: no rate limits to trip over.
    async with StandIn(global_rate=None, chat_rate=None) as standin:
        # Nor a flood to cut short: a pasted script of lines is one person, not an attack.
        console_settings = settings.model_copy(
            update={"api_url": standin.api_root, "flood_limit": 1_000_000}
        )
        deps = Deps(settings=console_settings, engine=engine, guide=guide, clock=utcnow)
        app = build_application(deps, DEFAULT_TOKEN).app
        async with app:
            processed = ProcessedUpdates(app, deps.visits)
            if app.post_init is not None:  # run_polling would call it; we start by hand
                await app.post_init(app)
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            transcript = Transcript(standin, CONSOLE_USER_ID, color=interactive)
            if interactive:
                out.write(
                    "Chatting with MiliaBot. Type a message, a number to press a button, "
                    "or Ctrl-D to leave.\n"
                )
            await standin.settle()
            while True:
                line = await _read_line(lines, out, interactive)
                if line is None:
                    break
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                if not interactive:
                    out.write(f"{PROMPT}{text}\n")
                update_id, problem = transcript.act(text)
                if update_id is None:
                    out.write(f"  ({problem})\n")
                    continue
                await processed.wait(update_id)
                out.write(transcript.news())
                out.flush()
            await app.updater.stop()
            await app.stop()
    engine.dispose()
    return 0


async def _read_line(lines: TextIO, out: TextIO, interactive: bool) -> str | None:
    if interactive:
        out.write(PROMPT)
        out.flush()
    line = await asyncio.to_thread(lines.readline)
    return line or None


class ProcessedUpdates:
    """Know when the bot has finished with an update, so nobody has to guess with a sleep.

    Registered in the last handler group, which PTB runs after every other group
    (and after the error handler, when a handler failed).
    """

    LAST_GROUP = 1_000_000

    def __init__(self, app: BotApplication, visits: Visits | None = None) -> None:
        self._done: set[int] = set()
        self._changed = asyncio.Condition()
        self._visits = visits
        app.add_handler(TypeHandler(Update, self._record), group=self.LAST_GROUP)

    async def _record(self, update: Update, _context: object) -> None:
        # The visit is written in the background (Handlers.record_user): an update is
        # finished when that is too, so whoever waits for it finds the user's row.
        user = update.effective_user
        if self._visits is not None and user is not None:
            await self._visits.recorded(user.id)
        async with self._changed:
            self._done.add(update.update_id)
            self._changed.notify_all()

    async def wait(self, update_id: int, *, timeout: float = 10.0) -> None:
        """Return once the update with this id has been handled."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: update_id in self._done)


def button_number(text: str) -> int | None:
    """The button a typed number picks (``2``, ``٢``), or None for anything else.

    ``str.isdigit`` would take ``²`` too, which ``int()`` then refuses; and a long run of
    digits is a message, not a button.
    """
    s = ascii_digits(text.strip())
    return int(s) if re.fullmatch(r"[0-9]{1,3}", s) else None


@dataclass
class Transcript:
    """What the bot has said in one chat, turned into terminal text as it arrives."""

    standin: StandIn
    chat_id: int
    color: bool
    printed: dict[int, tuple[str, str]] = field(default_factory=dict)
    buttons: list[tuple[int, str]] = field(default_factory=list)
    answers_seen: int = 0

    def act(self, text: str) -> tuple[int | None, str]:
        """Send `text` as the user, or press a numbered button.

        Return the update's id, or None and what was wrong with the input.
        """
        number = button_number(text)
        if number is not None:
            if not self.buttons:
                return None, "there are no buttons to press; type a message instead"
            if not 1 <= number <= len(self.buttons):
                return None, f"pick a button from 1 to {len(self.buttons)}"
            message_id, data = self.buttons[number - 1]
            return self.standin.press_button(self.chat_id, message_id, data), ""
        return self.standin.send_message(
            text, user_id=self.chat_id, first_name=CONSOLE_USER_NAME
        ), ""

    def news(self) -> str:
        """Render the bot's new and edited messages since the last call."""
        parts: list[str] = []
        for message in self.standin.chat(self.chat_id):
            state = (message.text or message.caption or "", repr(message.reply_markup))
            if message.deleted or self.printed.get(message.message_id) == state:
                continue
            edited = message.message_id in self.printed
            self.printed[message.message_id] = state
            parts.append(self._render(message, edited=edited))
        # Pop-up notes from answerCallbackQuery, shown the way a phone shows a toast.
        for answer in self.standin.answered_callbacks[self.answers_seen :]:
            if answer.text:
                parts.append(f"  [{answer.text}]\n")
        self.answers_seen = len(self.standin.answered_callbacks)
        return "".join(parts)

    def _render(self, message: BotMessage, *, edited: bool) -> str:
        header = "bot (edited)>" if edited else "bot>"
        body = to_terminal(message.text or message.caption or "", color=self.color)
        lines = [f"{header} {body.splitlines()[0] if body else ''}"]
        lines += [f"     {line}" if line else "" for line in body.splitlines()[1:]]
        self.buttons = [] if message.buttons else self.buttons
        for row in message.buttons:
            labels = []
            for label, data in row:
                if data is None:
                    labels.append(f"[{label}]")
                    continue
                self.buttons.append((message.message_id, data))
                labels.append(f"[{len(self.buttons)}] {label}")
            lines.append("     " + "   ".join(labels))
        return "\n".join(lines) + "\n\n"


_ANSI_STYLES = {"b": "1", "strong": "1", "i": "3", "em": "3", "u": "4", "code": "2"}


class _TerminalHTML(HTMLParser):
    """Turn Telegram HTML into terminal text: ANSI bold and italics, links spelled out."""

    def __init__(self, *, color: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.color = color
        self.out: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif self.color and tag in _ANSI_STYLES:
            self.out.append(f"\033[{_ANSI_STYLES[tag]}m")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            self.out.append(f" ({self.links.pop()})")
        elif self.color and tag in _ANSI_STYLES:
            self.out.append("\033[0m")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def to_terminal(html_text: str, *, color: bool) -> str:
    """Render Telegram HTML for a terminal."""
    parser = _TerminalHTML(color=color)
    parser.feed(html_text)
    parser.close()
    return unescape("".join(parser.out))
