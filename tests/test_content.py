"""The shipped guide is valid and original; the validator catches every kind of problem."""

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import frontmatter
import pytest

from miliabot_tg import content
from miliabot_tg.content import TIP_KINDS, ContentError, Guide, load_guide, validate
from miliabot_tg.markup import Rendered, render
from miliabot_tg.paths import bundled_dir
from miliabot_tg.texts import MAX_MESSAGE, snippet_view

CONTENT = bundled_dir("content")
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
BRIEF_TOPICS = [
    "what-milia-are",
    "types-of-milia",
    "primary-causes",
    "secondary-causes",
    "milia-in-babies",
    "dont-squeeze",
    "home-care",
    "gentle-exfoliation",
    "moisturizing",
    "sun-protection",
    "professional-treatments",
    "when-to-see-a-doctor",
    "prevention-routine",
]


@pytest.fixture(scope="module")
def guide() -> Guide:
    return load_guide(CONTENT)


def test_shipped_content_is_valid(guide: Guide) -> None:
    assert validate(CONTENT) == []
    assert len(guide.snippets) >= 13
    assert set(guide.tips) == set(TIP_KINDS)
    assert all(len(tips) >= 5 for tips in guide.tips.values())


def test_every_topic_of_the_brief_has_a_snippet(guide: Guide) -> None:
    assert [sid for sid in BRIEF_TOPICS if guide.get(sid) is None] == []


def test_every_snippet_fits_one_telegram_message(guide: Guide) -> None:
    for snippet in guide.snippets:
        text, keyboard = snippet_view(guide, snippet)
        assert len(text) <= MAX_MESSAGE
        for row in keyboard.inline_keyboard:
            for button in row:
                assert isinstance(button.callback_data, str)
                assert len(button.callback_data.encode()) <= 64


def _eight_word_runs(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))
    return {tuple(words[i : i + 8]) for i in range(len(words) - 7)}


def test_no_content_repeats_the_seed_article() -> None:
    seeds = sorted(SEEDS.glob("*.txt"))
    if not seeds:
        pytest.skip("the seed article is not beside this checkout")
    seed_runs = set().union(*(_eight_word_runs(p.read_text()) for p in seeds))
    copied = {
        str(p): sorted(_eight_word_runs(p.read_text()) & seed_runs)[:1]
        for p in CONTENT.rglob("*.md")
    }
    assert {p: runs for p, runs in copied.items() if runs} == {}


@pytest.mark.parametrize(
    "phrase", ["retentional", "milia removal cream", "infected primary", "surgically"]
)
def test_content_repeats_none_of_the_seed_errors(phrase: str) -> None:
    for path in CONTENT.rglob("*.md"):
        assert phrase not in frontmatter.load(str(path)).content.lower(), path


@pytest.mark.parametrize("phrase", ["antibiotic", "baking soda"])
def test_content_mentions_seed_remedies_only_to_warn_against_them(phrase: str) -> None:
    negation = re.compile(r"\b(not|no|never|don't|won't|aren't|isn't|skip|avoid)\b")
    for path in CONTENT.rglob("*.md"):
        body = frontmatter.load(str(path)).content.lower()
        for sentence in re.split(r"(?<=[.!?])\s", body):
            if phrase in sentence:
                context = (
                    sentence + " " + body[max(0, body.find(sentence) - 80) : body.find(sentence)]
                )
                assert negation.search(context), (path, sentence)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sunscreen", "sun-protection"),
        ("baby", "milia-in-babies"),
        ("newborn bumps", "milia-in-babies"),
        ("is it a whitehead", "not-whiteheads"),
        ("exfoliating", "gentle-exfoliation"),
        ("exfol", "gentle-exfoliation"),
        ("dermatologist", "when-to-see-a-doctor"),
        ("can I squeeze them", "dont-squeeze"),
    ],
)
def test_search_finds_the_topic_people_mean(guide: Guide, query: str, expected: str) -> None:
    found = [s.id for s in guide.search(query, limit=3)]
    assert expected in found, found


def test_search_of_nonsense_or_stopwords_finds_nothing(guide: Guide) -> None:
    assert guide.search("zzzqqq") == []
    assert guide.search("what is the") == []
    assert guide.search("   ") == []


# --- the validator, on broken copies of the content ---------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    folder = tmp_path / "content"
    shutil.copytree(CONTENT, folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _problems(folder: Path) -> list[str]:
    return [f"{p.path.name}: {p.message}" for p in validate(folder)]


def test_validator_reports_missing_and_unknown_fields(broken: Path) -> None:
    _edit(broken / "home-care.md", "topic: care\n", "mood: calm\n")
    problems = _problems(broken)
    assert "home-care.md: missing field(s): topic" in problems
    assert "home-care.md: unknown field(s): mood" in problems


def test_validator_reports_duplicate_ids_and_dangling_links(broken: Path) -> None:
    (broken / "copy.md").write_text(
        (broken / "home-care.md").read_text().replace("id: home-care", "id: copy", 1)
    )
    _edit(broken / "copy.md", "id: copy", "id: home-care")
    _edit(broken / "dont-squeeze.md", "related: [", "related: [no-such-topic, ")
    _edit(broken / "dont-squeeze.md", ", eye-area-care]", "]")
    problems = _problems(broken)
    assert "home-care.md: id 'home-care' is also used by copy.md" in problems
    assert "copy.md: id 'home-care' does not match the file name" in problems
    assert any("related id 'no-such-topic' does not exist" in p for p in problems)


def test_validator_reports_markup_telegram_cannot_show(broken: Path) -> None:
    path = broken / "home-care.md"
    path.write_text(path.read_text() + "\n# A heading\n\n<script>x</script>\n\n1. one\n")
    problems = _problems(broken)
    assert "home-care.md: body uses a heading (the bot prints the title itself)" in problems
    assert "home-care.md: body uses raw HTML" in problems
    assert "home-care.md: body uses a numbered list (use '- ' bullets)" in problems


def test_validator_reports_html_telegram_would_refuse(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sloppy = Rendered(html="<blink>hi</blink> " + "word " * 100, plain="word " * 100, problems=())
    monkeypatch.setattr(content, "render", lambda _markdown: sloppy)
    problems = _problems(broken)
    assert (
        'home-care.md: body would be refused by Telegram: Unsupported start tag "blink" '
        "at byte offset 0"
    ) in problems


def test_validator_reports_a_snippet_over_the_length_limit(broken: Path) -> None:
    path = broken / "home-care.md"
    path.write_text(path.read_text() + "\n" + "word " * 900 + "\n")
    assert any("home-care.md: body has" in p and "words" in p for p in _problems(broken))


def test_validator_reports_unreadable_front_matter_and_missing_tips(broken: Path) -> None:
    (broken / "bad.md").write_text("---\nid: [unclosed\n---\nbody\n")
    (broken / "tips" / "exfoliate.md").unlink()
    problems = _problems(broken)
    assert any(p.startswith("bad.md: front matter cannot be read") for p in problems)
    assert "tips: has no tips for 'exfoliate'" in problems


def test_loading_invalid_content_raises_with_every_problem(broken: Path) -> None:
    _edit(broken / "home-care.md", "topic: care", "topic: gardening")
    _edit(broken / "dont-squeeze.md", "order: ", "order: x")
    with pytest.raises(ContentError) as caught:
        load_guide(broken)
    names = {p.path.name for p in caught.value.problems}
    assert names == {"home-care.md", "dont-squeeze.md"}


# --- the renderer ---------------------------------------------------------------------------


def test_markdown_renders_to_telegram_html_and_escapes_text() -> None:
    result = render("Use **SPF 30+** & _reapply_ <2 h.\nSame line.\n\n- one\n- two\n\nEnd.")
    assert result.html == (
        "Use <b>SPF 30+</b> &amp; <i>reapply</i> &lt;2 h. Same line.\n\n• one\n• two\n\nEnd."
    )
    assert result.plain.startswith("Use SPF 30+ & reapply <2 h.")
    assert result.problems == ()


def test_links_must_be_web_addresses() -> None:
    assert render("[x](https://www.aad.org)").html == '<a href="https://www.aad.org">x</a>'
    assert render("[x](tg://resolve?domain=x)").problems


# --- search stays cheap whatever a user sends ----------------------------------------------

HOSTILE = [
    "exfol " * 700,  # one prefix, repeated: each copy used to rescan the vocabulary
    " ".join(f"w{i:04d}" for i in range(900)),  # many distinct non-words
    "milia skin sun cream baby doctor peel retinol " * 90,  # real words, repeated
    "x" * 4096,  # one endless non-word
    "é😀ß" * 1400,  # unicode that folds away or expands
    " ".join(f"{w[:3]}{i}" for i, w in enumerate(["sun", "exf", "mil", "der"] * 200)),
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_query_scores_at_most_the_capped_number_of_terms(
    guide: Guide, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(query) >= 3000
    scored: list[str] = []
    score_term = content._term_scores

    def counting(index: object, term: str) -> dict[str, float]:
        scored.append(term)
        return score_term(index, term)  # type: ignore[arg-type]

    monkeypatch.setattr(content, "_term_scores", counting)
    guide.search(query)
    assert len(scored) <= content.MAX_TERMS
    assert len(set(scored)) == len(scored), "a repeated word is scored once"
    assert all(len(term) <= content.MAX_TERM_CHARS for term in scored)


def test_a_search_never_rescans_the_vocabulary(guide: Guide) -> None:
    class NoScan(dict[str, float]):
        def __iter__(self) -> Any:
            raise AssertionError("the vocabulary was scanned during a search")

        def items(self) -> Any:
            raise AssertionError("the vocabulary was scanned during a search")

        def keys(self) -> Any:
            raise AssertionError("the vocabulary was scanned during a search")

    index = guide._index
    guarded = dataclasses.replace(index, idf=NoScan(index.idf))
    found = content._search(guarded, content.query_terms("exfol dermatol newborn"), 5)
    assert [s.id for s in found] == [s.id for s in guide.search("exfol dermatol newborn")]


def test_query_terms_are_distinct_counted_and_capped() -> None:
    repeated = "sunscreen " * 400
    assert content.query_terms(repeated) == {"sunscreen": content.MAX_QUERY_CHARS // 10}
    many = " ".join(f"word{i}" for i in range(100))
    assert list(content.query_terms(many)) == [f"word{i}" for i in range(content.MAX_TERMS)]
    assert content.query_terms("milia " + "y" * (content.MAX_TERM_CHARS + 1)) == {"milia": 1}


def test_search_reads_only_the_start_of_a_long_message(guide: Guide) -> None:
    assert guide.search("sunscreen")
    assert guide.search(" " * content.MAX_QUERY_CHARS + "sunscreen") == []
