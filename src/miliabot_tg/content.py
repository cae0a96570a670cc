"""Load, validate and search the guide in `content/`: Markdown files with YAML front matter."""

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from miliabot_tg import search
from miliabot_tg.markup import render
from miliabot_tg.telegram_html import EntityParseError, parse_html

TOPICS = (
    "basics",
    "types",
    "causes",
    "babies",
    "care",
    "exfoliation",
    "moisturizing",
    "sun",
    "treatment",
    "doctor",
    "prevention",
)
TIP_KINDS = ("sunscreen", "moisturize", "exfoliate")

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_TITLE = 32
MIN_WORDS, MAX_WORDS = 80, 180
MAX_TIP_CHARS = 200
# Room left for the title, the disclaimer foot and spacing in a 4096-character message.
MAX_BODY_CHARS = 3600

_SNIPPET_FIELDS = {"id", "title", "topic", "order", "related", "references", "reviewed"}
_SNIPPET_OPTIONAL = {"keywords"}
_TIP_FIELDS = {"id", "for", "references", "reviewed"}
_REFERENCE_FIELDS = {"title", "url"}
_PAGE_URL = re.compile(r"^https://[a-z0-9.-]+\.[a-z]{2,}(/\S*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """A page a snippet's claims rest on, named so a reader can follow it."""

    title: str
    url: str


@dataclass(frozen=True)
class Snippet:
    """One screen of the guide."""

    id: str
    title: str
    topic: str
    order: int
    related: tuple[str, ...]
    keywords: tuple[str, ...]
    references: tuple[Reference, ...]
    reviewed: date
    html: str
    plain: str


@dataclass(frozen=True)
class Problem:
    """Something wrong with one content file."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ContentError(Exception):
    """The content folder has problems; the bot will not start on it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Guide:
    """The whole guide, immutable once loaded."""

    snippets: tuple[Snippet, ...]
    tips: Mapping[str, tuple[str, ...]]

    def get(self, snippet_id: str) -> Snippet | None:
        """Return the snippet with this id, if there is one."""
        return self._index.by_id.get(snippet_id)

    def search(self, query: str, *, limit: int = 5) -> list[Snippet]:
        """Return the snippets that answer `query` well, best first (maybe none)."""
        return _search(self._index, query_terms(query), limit)

    def find(self, query: str, *, limit: int = 5) -> "Found":
        """Search: the good answers to `query`, or else the nearest topics."""
        return _find(self._index, query_terms(query), limit)

    @cached_property
    def _index(self) -> "_SearchIndex":
        return _build_index(self.snippets)


def load_guide(folder: Path) -> Guide:
    """Load the guide, or raise ContentError listing every problem found.

    The age of the reviews is not checked here: a running bot must not stop starting
    on a calendar date. `validate` (and so `miliabot content validate` in CI) checks it.
    """
    guide, problems = _load(folder, None)
    if problems:
        raise ContentError(problems)
    guide.search("")  # builds the search index now, not during the first user's search
    return guide


def validate(folder: Path, *, today: date | None = None) -> list[Problem]:
    """Return every problem in the content folder (empty when it is valid).

    Besides what `load_guide` refuses, a file whose `reviewed` date is more than a year
    before `today` (default: today in UTC), or after it, is a problem: health content
    is re-checked against its references at least once a year.
    """
    return _load(folder, today or datetime.now(UTC).date())[1]


def source_files(folder: Path) -> dict[str, str]:
    """The texts the guide is built from, by path in the folder, newlines normalised.

    Exactly the files `load_guide` reads (snippets and tips, not README.md), so that
    `guide_from_sources(source_files(folder), folder)` is the folder's guide. Read it
    only from a folder that `validate` passed: an undecodable file raises here.
    """
    return {name: _normalise(data.decode("utf-8")) for name, data in _files_on_disk(folder).items()}


def guide_from_sources(sources: Mapping[str, str], origin: Path) -> Guide:
    """Build the guide from stored texts (see `source_files`), or raise ContentError.

    `origin` only names where the texts came from in the problems reported. As with
    `load_guide`, the age of the reviews is not checked: a published version keeps serving.
    """
    files = {name: text.encode("utf-8") for name, text in sources.items()}
    guide, problems = _load_files(origin, files, None)
    if problems:
        raise ContentError(problems)
    return guide


def _normalise(text: str) -> str:
    """LF newlines whatever the editor wrote, as Python's text mode reads them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _files_on_disk(folder: Path) -> dict[str, bytes]:
    paths = [p for p in folder.glob("*.md") if p.name.upper() != "README.MD"]
    paths += (folder / "tips").glob("*.md")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths if p.is_file()}


def _load(folder: Path, today: date | None) -> tuple[Guide, list[Problem]]:
    if not folder.is_dir():
        return Guide((), {}), [Problem(folder, "is not a folder")]
    return _load_files(folder, _files_on_disk(folder), today)


def _load_files(
    folder: Path, files: Mapping[str, bytes], today: date | None
) -> tuple[Guide, list[Problem]]:
    """Build the guide from the folder's files (name relative to `folder`: contents)."""
    problems: list[Problem] = []
    names = sorted(name for name in files if "/" not in name)
    # Every id a file claims, even in a file with other problems, so that one broken
    # file is reported once and not again as a dangling link from its neighbours.
    claimed: dict[str, Path] = {}
    for name in names:
        path = folder / name
        claimed_id = _claimed_id(files[name])
        if claimed_id in claimed:
            problems.append(
                Problem(path, f"id {claimed_id!r} is also used by {claimed[claimed_id].name}")
            )
        elif claimed_id is not None:
            claimed[claimed_id] = path
    snippets: list[Snippet] = []
    for name in names:
        path = folder / name
        snippet = _load_snippet(path, files[name], problems, today)
        if snippet is None:
            continue
        snippets.append(snippet)
        for target in snippet.related:
            if target not in claimed:
                problems.append(Problem(path, f"related id {target!r} does not exist"))
            elif target == snippet.id:
                problems.append(Problem(path, "lists itself as related"))
    if not names:
        problems.append(Problem(folder, "has no snippets"))
    tips: dict[str, tuple[str, ...]] = {}
    for name in sorted(n for n in files if n.startswith("tips/") and n.count("/") == 1):
        path = folder / name
        loaded = _load_tips(path, files[name], problems, today)
        if loaded is not None:
            kind, items = loaded
            if kind in tips:
                problems.append(Problem(path, f"a second tip file for {kind!r}"))
            tips[kind] = items
    for kind in TIP_KINDS:
        if kind not in tips:
            problems.append(Problem(folder / "tips", f"has no tips for {kind!r}"))
    snippets.sort(key=lambda s: (s.order, s.id))
    return Guide(tuple(snippets), tips), problems


def _claimed_id(data: bytes) -> str | None:
    post = _read(Path(), data, [])
    claimed = post.metadata.get("id") if post is not None else None
    return claimed if isinstance(claimed, str) else None


def _read(path: Path, data: bytes, problems: list[Problem]) -> frontmatter.Post | None:
    try:
        return frontmatter.loads(_normalise(data.decode("utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        problems.append(Problem(path, f"front matter cannot be read: {exc}".splitlines()[0]))
        return None


def _check_fields(
    path: Path, meta: dict[str, Any], required: set[str], optional: set[str], out: list[Problem]
) -> bool:
    missing = sorted(required - meta.keys())
    unknown = sorted(meta.keys() - required - optional)
    if missing:
        out.append(Problem(path, f"missing field(s): {', '.join(missing)}"))
    if unknown:
        out.append(Problem(path, f"unknown field(s): {', '.join(unknown)}"))
    return not missing


def _string_list(
    path: Path, meta: dict[str, Any], name: str, out: list[Problem]
) -> tuple[str, ...]:
    value = meta.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        out.append(Problem(path, f"{name} must be a list of non-empty strings"))
        return ()
    return tuple(v.strip() for v in value)


def _references(path: Path, meta: dict[str, Any], out: list[Problem]) -> tuple[Reference, ...]:
    """Parse `references`: a list of {title, url} maps naming pages, at least one."""
    value = meta.get("references")
    if not isinstance(value, list) or not value:
        out.append(Problem(path, "references must list at least one page as {title, url}"))
        return ()
    found: list[Reference] = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, str):
            # The old shape named only the organisation; a reader can't follow that.
            out.append(Problem(path, f"reference {number} names no page: give a title and url"))
            continue
        if not isinstance(item, dict) or set(item) != _REFERENCE_FIELDS:
            out.append(Problem(path, f"reference {number} must have exactly a title and a url"))
            continue
        title, url = item["title"], item["url"]
        if not isinstance(title, str) or not title.strip():
            out.append(Problem(path, f"reference {number} has an empty title"))
        elif not isinstance(url, str) or not _PAGE_URL.match(url.strip()):
            out.append(Problem(path, f"reference {number} url must be a https:// page address"))
        else:
            found.append(Reference(title=title.strip(), url=url.strip()))
    return tuple(found)


def _one_year_before(day: date) -> date:
    # 29 February has no twin a year earlier; the 28th is the same "one year".
    return day.replace(year=day.year - 1, day=min(day.day, 28) if day.month == 2 else day.day)


def _reviewed(path: Path, value: object, out: list[Problem]) -> date | None:
    # A datetime is a date too, but a review is a day, not an instant.
    if not isinstance(value, date) or isinstance(value, datetime):
        out.append(Problem(path, "reviewed must be a date like 2026-11-26"))
        return None
    return value


def _review_age(path: Path, reviewed: date | None, today: date | None) -> list[Problem]:
    """Note a review more than a year before `today`, or after it (None: not checked).

    An old review leaves the file loadable: it is a reason to re-check the content, not
    a reason to drop it (and report its neighbours' links to it as dangling).
    """
    if reviewed is None or today is None:
        return []
    if reviewed < _one_year_before(today):
        return [
            Problem(
                path,
                f"reviewed {reviewed.isoformat()} is more than a year ago; check it against its "
                "references again and update the date",
            )
        ]
    # A day's grace: an author east of UTC may already be living in tomorrow.
    if reviewed > today + timedelta(days=1):
        return [Problem(path, f"reviewed {reviewed.isoformat()} is in the future")]
    return []


def _load_snippet(
    path: Path, data: bytes, problems: list[Problem], today: date | None
) -> Snippet | None:
    post = _read(path, data, problems)
    if post is None:
        return None
    meta: dict[str, Any] = dict(post.metadata)
    before = len(problems)
    if not _check_fields(path, meta, _SNIPPET_FIELDS, _SNIPPET_OPTIONAL, problems):
        return None
    snippet_id, title, topic, order = meta["id"], meta["title"], meta["topic"], meta["order"]
    if not isinstance(snippet_id, str) or not ID_PATTERN.match(snippet_id):
        problems.append(Problem(path, "id must be 1-32 lowercase letters, digits or hyphens"))
    elif snippet_id != path.stem:
        problems.append(Problem(path, f"id {snippet_id!r} does not match the file name"))
    if not isinstance(title, str) or not title.strip():
        problems.append(Problem(path, "title must be a non-empty string"))
    elif len(title) > MAX_TITLE:
        problems.append(Problem(path, f"title is {len(title)} characters; at most {MAX_TITLE}"))
    if topic not in TOPICS:
        problems.append(Problem(path, f"topic {topic!r} is not one of: {', '.join(TOPICS)}"))
    if not isinstance(order, int) or isinstance(order, bool):
        problems.append(Problem(path, "order must be a whole number"))
    related = _string_list(path, meta, "related", problems)
    if not 1 <= len(related) <= 3:
        problems.append(Problem(path, "related must list 1 to 3 snippet ids"))
    keywords = _string_list(path, meta, "keywords", problems)
    references = _references(path, meta, problems)
    reviewed = _reviewed(path, meta["reviewed"], problems)
    rendered = render(post.content)
    problems.extend(Problem(path, f"body {p}") for p in rendered.problems)
    problems.extend(Problem(path, f"body {p}") for p in _telegram_refusals(rendered.html))
    words = len(rendered.plain.split())
    if not MIN_WORDS <= words <= MAX_WORDS:
        problems.append(Problem(path, f"body has {words} words; keep it {MIN_WORDS}-{MAX_WORDS}"))
    if len(rendered.plain) > MAX_BODY_CHARS:
        problems.append(
            Problem(path, f"body is {len(rendered.plain)} characters; at most {MAX_BODY_CHARS}")
        )
    if len(problems) > before or reviewed is None:
        return None
    problems.extend(_review_age(path, reviewed, today))
    return Snippet(
        id=snippet_id,
        title=title.strip(),
        topic=topic,
        order=order,
        related=related,
        keywords=keywords,
        references=references,
        reviewed=reviewed,
        html=rendered.html,
        plain=rendered.plain,
    )


def _telegram_refusals(html: str) -> list[str]:
    """Check rendered HTML the way Telegram will, in case the renderer ever slips."""
    try:
        parse_html(html)
    except EntityParseError as exc:
        return [f"would be refused by Telegram: {exc}"]
    return []


def _load_tips(
    path: Path, data: bytes, problems: list[Problem], today: date | None
) -> tuple[str, tuple[str, ...]] | None:
    post = _read(path, data, problems)
    if post is None:
        return None
    meta: dict[str, Any] = dict(post.metadata)
    before = len(problems)
    if not _check_fields(path, meta, _TIP_FIELDS, set(), problems):
        return None
    kind = meta["for"]
    if kind not in TIP_KINDS:
        problems.append(Problem(path, f"for {kind!r} is not one of: {', '.join(TIP_KINDS)}"))
    elif meta["id"] != f"tips-{kind}":
        problems.append(Problem(path, f"id must be 'tips-{kind}'"))
    _references(path, meta, problems)
    reviewed = _reviewed(path, meta["reviewed"], problems)
    lines = [line.strip() for line in post.content.splitlines() if line.strip()]
    items: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith("- "):
            problems.append(Problem(path, f"line {number} of the body is not a '- ' bullet"))
            continue
        rendered = render(line[2:])
        problems.extend(Problem(path, f"tip {number} {p}") for p in rendered.problems)
        problems.extend(
            Problem(path, f"tip {number} {p}") for p in _telegram_refusals(rendered.html)
        )
        if len(rendered.plain) > MAX_TIP_CHARS:
            problems.append(Problem(path, f"tip {number} is over {MAX_TIP_CHARS} characters"))
        items.append(rendered.html)
    if not items:
        problems.append(Problem(path, "has no tips"))
    if len(problems) > before:
        return None
    problems.extend(_review_age(path, reviewed, today))
    return str(kind), tuple(items)


# --- search -------------------------------------------------------------------------------
# The ranking itself is in `search.py` (BM25F, stemming, typo correction); here are the caps on
# what a query may cost and the Guide's view of the results.

# Whatever a user sends, a search reads at most this much of it: a question is a phrase, not an
# essay, and any text must be answered in well under 20 ms of CPU on the event loop. The caps
# apply where the query comes in (`query_terms`), so they hold whatever ranks the terms.
MAX_QUERY_CHARS = 500
MAX_TERMS = 12  # distinct terms; a repeated word is one term counted more than once
MAX_TERM_CHARS = 30  # longer than any word in the guide: such a "word" can match nothing
MIN_PREFIX = search.MIN_PREFIX


def query_terms(query: str) -> Counter[str]:
    """The distinct search terms of `query` and how often each was typed, within the caps.

    Policy: only the first MAX_QUERY_CHARS characters are read; stopwords and words longer than
    MAX_TERM_CHARS are dropped; of the rest, the first MAX_TERMS distinct terms are kept. A
    term is a word folded to ASCII and spelled the American way (see `search.surface_words`).
    """
    terms: Counter[str] = Counter()
    for word in search.surface_words(query[:MAX_QUERY_CHARS]):
        if len(word) > MAX_TERM_CHARS:
            continue
        if word in terms or len(terms) < MAX_TERMS:
            terms[word] += 1
    return terms


@dataclass(frozen=True)
class Found:
    """What a search found: answers, or else the nearest topics."""

    matches: list[Snippet]  # good answers, best first; empty when nothing matched well
    closest: list[Snippet]  # when there are no good answers: the nearest topics, if any


@dataclass(frozen=True)
class _SearchIndex:
    by_id: dict[str, Snippet]
    ranking: search.Index


def _build_index(snippets: tuple[Snippet, ...]) -> _SearchIndex:
    documents = [
        search.Document(s.id, s.title, " ".join(s.keywords) + " " + s.topic, s.plain)
        for s in snippets
    ]
    return _SearchIndex({s.id: s for s in snippets}, search.build(documents))


def _find(index: _SearchIndex, terms: Counter[str], limit: int) -> Found:
    ranking = index.ranking.rank(terms)
    best = [index.by_id[sid] for sid, _ in ranking.results[:limit]]
    return Found(best, []) if ranking.answers else Found([], best)


def _search(index: _SearchIndex, terms: Counter[str], limit: int) -> list[Snippet]:
    return _find(index, terms, limit).matches
