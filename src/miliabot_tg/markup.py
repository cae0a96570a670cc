"""Render the guide's small Markdown subset to Telegram HTML, refusing what Telegram can't show.

Telegram's HTML mode knows a handful of inline tags and no lists or headings, so the
subset is: paragraphs, **bold**, _italic_, `code`, links, and flat bullet lists.
"""

from dataclasses import dataclass
from html import escape

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark")

_INLINE_TAGS = {
    "strong_open": "<b>",
    "strong_close": "</b>",
    "em_open": "<i>",
    "em_close": "</i>",
    "link_close": "</a>",
}

_UNSUPPORTED = {
    "heading_open": "a heading (the bot prints the title itself)",
    "ordered_list_open": "a numbered list (use '- ' bullets)",
    "blockquote_open": "a block quote",
    "fence": "a code block",
    "code_block": "an indented code block",
    "hr": "a horizontal rule",
    "html_block": "raw HTML",
    "html_inline": "raw HTML",
    "image": "an image",
    "table_open": "a table",
}


@dataclass(frozen=True)
class Rendered:
    """Telegram HTML, the same text without markup, and what could not be rendered."""

    html: str
    plain: str
    problems: tuple[str, ...]


def render(markdown: str) -> Rendered:
    """Render `markdown` to Telegram HTML; list constructs Telegram cannot show."""
    problems: list[str] = []
    blocks_html: list[str] = []
    blocks_plain: list[str] = []
    list_depth = 0
    for token in _PARSER.parse(markdown):
        if token.type in _UNSUPPORTED:
            problems.append(f"uses {_UNSUPPORTED[token.type]}")
        elif token.type == "bullet_list_open":
            list_depth += 1
            if list_depth > 1:
                problems.append("uses a nested list")
        elif token.type == "bullet_list_close":
            list_depth -= 1
            blocks_html.append("\n\n")
            blocks_plain.append("\n\n")
        elif token.type == "inline":
            html, plain = _render_inline(token.children or [], problems)
            if list_depth:
                html, plain = f"• {html}", f"• {plain}"
            blocks_html.append(html)
            blocks_plain.append(plain)
        elif token.type == "paragraph_close" and not token.hidden:
            blocks_html.append("\n\n")
            blocks_plain.append("\n\n")
        elif token.type == "list_item_close":
            blocks_html.append("\n")
            blocks_plain.append("\n")
    return Rendered(
        html=_tidy("".join(blocks_html)),
        plain=_tidy("".join(blocks_plain)),
        problems=tuple(problems),
    )


def _render_inline(children: list[Token], problems: list[str]) -> tuple[str, str]:
    html: list[str] = []
    plain: list[str] = []
    for child in children:
        if child.type == "text":
            html.append(escape(child.content, quote=False))
            plain.append(child.content)
        elif child.type == "code_inline":
            html.append(f"<code>{escape(child.content, quote=False)}</code>")
            plain.append(child.content)
        elif child.type == "softbreak":
            html.append(" ")
            plain.append(" ")
        elif child.type == "hardbreak":
            html.append("\n")
            plain.append("\n")
        elif child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            if not href.startswith(("https://", "http://")):
                problems.append(f"links to {href!r}, which is not a web address")
            html.append(f'<a href="{escape(href, quote=True)}">')
        elif child.type in _INLINE_TAGS:
            html.append(_INLINE_TAGS[child.type])
        elif child.type in _UNSUPPORTED:
            problems.append(f"uses {_UNSUPPORTED[child.type]}")
        else:
            problems.append(f"uses markup the bot cannot render ({child.type})")
    return "".join(html), "".join(plain)


def _tidy(text: str) -> str:
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()
