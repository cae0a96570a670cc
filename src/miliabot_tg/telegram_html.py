"""Telegram's HTML parse mode: what it accepts, and the plain text and entities it shows.

Shared by the Bot API stand-in (which refuses what Telegram refuses) and the content
validator (so a snippet that Telegram would reject never ships).
"""

import re
from html.parser import HTMLParser
from typing import Any, Final, NoReturn

JSON = dict[str, Any]


class EntityParseError(ValueError):
    """Text is not valid Telegram HTML; the message is Telegram's wording."""


_HTML_TAGS: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


class _TelegramHTML(HTMLParser):
    """Collects the plain text and entities of Telegram HTML; raises EntityParseError."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.parts: list[str] = []
        self.entities: list[JSON] = []
        self.open: list[tuple[str, int, JSON | None]] = []  # tag, start offset, entity
        self._end = 0  # UTF-16 length of the text so far

    def _index(self) -> int:
        """Character index of the current parse position in the source."""
        line, column = self.getpos()
        start = 0
        for _ in range(line - 1):
            start = self.source.index("\n", start) + 1
        return start + column

    def _at(self, extra: int = 0) -> int:
        """UTF-8 byte offset of the current parse position (plus ``extra`` characters)."""
        return len(self.source[: self._index() + extra].encode())

    def _fail(self, message: str) -> NoReturn:
        raise EntityParseError(message)

    def _text(self, text: str) -> None:
        self.parts.append(text)
        self._end += utf16_len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kind = _HTML_TAGS.get(tag)
        if kind is None:
            self._fail(f'Unsupported start tag "{tag}" at byte offset {self._at()}')
        values = dict(attrs)
        entity: JSON | None = {"type": kind}
        if tag == "a":
            href = values.get("href")
            entity = {"type": "text_link", "url": href} if href else None
        elif tag == "span" and values.get("class") != "tg-spoiler":
            self._fail(f'Tag "span" must have class "tg-spoiler" at byte offset {self._at()}')
        elif tag == "tg-emoji":
            if not values.get("emoji-id"):
                self._fail(
                    f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {self._at()}'
                )
            entity = {"type": kind, "custom_emoji_id": values["emoji-id"]}
        elif tag == "blockquote" and "expandable" in values:
            entity = {"type": "expandable_blockquote"}
        elif tag == "code" and self.open and self.open[-1][0] == "pre":
            language = values.get("class") or ""
            pre = self.open[-1][2]
            if language.startswith("language-") and pre is not None:
                pre["language"] = language.removeprefix("language-")
            entity = None  # <pre><code class="language-x"> is one pre entity
        self.open.append((tag, self._end, entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.open:
            self._fail(f"Unexpected end tag at byte offset {self._at()}")
        name, start, entity = self.open[-1]
        if name != tag:
            self._fail(
                f'Unmatched end tag at byte offset {self._at()}, expected "</{name}>", '
                f'found "</{tag}>"'
            )
        self.open.pop()
        if entity is not None and self._end > start:
            self.entities.append({"offset": start, "length": self._end - start, **entity})

    def handle_data(self, data: str) -> None:
        if "<" in data:  # html.parser lets a stray "<" through as text; Telegram does not
            at = data.index("<")
            name = re.match(r"[^\s<>]*", self.source[self._index() + at + 1 :])
            self._fail(
                f'Unsupported start tag "{name.group() if name else ""}" '
                f"at byte offset {self._at(at)}"
            )
        self._text(data)

    def handle_entityref(self, name: str) -> None:
        char = _HTML_NAMED_ENTITIES.get(name)
        if char is not None:
            self._text(char)
        elif self.source.startswith(";", self._index() + 1 + len(name)):
            # Telegram would show "&nbsp;" literally: almost surely not what the bot meant.
            self._fail(f'Unsupported HTML entity "&{name};" at byte offset {self._at()}')
        else:
            self._text(f"&{name}")  # a bare "&", as in "Q&A": literal, like Telegram

    def handle_charref(self, name: str) -> None:
        try:
            char = chr(int(name[1:], 16) if name[0] in "xX" else int(name))
        except (ValueError, OverflowError):
            char = ""
        if not char or char == "\0" or "\ud800" <= char <= "\udfff":
            self._fail(f'Invalid HTML entity "&#{name};" at byte offset {self._at()}')
        self._text(char)

    def handle_comment(self, data: str) -> None:
        self._fail(f'Unsupported start tag "!--" at byte offset {self._at()}')

    def handle_decl(self, decl: str) -> None:
        self._fail(f'Unsupported start tag "!" at byte offset {self._at()}')

    def handle_pi(self, data: str) -> None:
        self._fail(f'Unsupported start tag "?" at byte offset {self._at()}')

    def unknown_decl(self, data: str) -> None:
        self._fail(f'Unsupported start tag "![" at byte offset {self._at()}')


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Telegram's HTML parse mode: returns (plain text, entities with UTF-16 offsets)."""
    parser = _TelegramHTML(source)
    # The extra space ends a trailing "&amp" or "Q&A", which html.parser mangles at the very end.
    parser.feed(source + " ")
    parser.close()
    if parser.open:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{parser.open[-1][0]}"'
        )
    parser.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    text = "".join(parser.parts)
    return text.removesuffix(" "), parser.entities
