"""The shipped guide is valid and original; the validator catches every kind of problem."""

import dataclasses
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import frontmatter
import pytest

from miliabot_tg import content, search
from miliabot_tg.content import (
    TIP_KINDS,
    ContentError,
    Guide,
    Reference,
    load_guide,
    validate,
)
from miliabot_tg.markup import Rendered, render
from miliabot_tg.paths import bundled_dir
from miliabot_tg.texts import MAX_MESSAGE, snippet_view

CONTENT = bundled_dir("content")
# The seed sits in shared/seeds beside the checkout, or beside the folder of worktrees.
SEEDS = next(
    (
        p / "shared" / "seeds"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "seeds").is_dir()
    ),
    Path("/nonexistent"),
)
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


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("what are milia", "what-milia-are"),  # "milia" is everywhere; the title decides
        ("can i pop milia", "dont-squeeze"),  # used to offer "Rare forms of milia" first
        ("can't I pop them?", "dont-squeeze"),
        ("suncreen", "sun-protection"),  # a typo of one letter
        ("exfoilate", "gentle-exfoliation"),  # two letters swapped
        ("moisturiser", "moisturizing"),  # British spelling, American title
        ("milia babys", "milia-in-babies"),  # a plural as people write it
        ("paediatrician newborn rash", "baby-look-alikes"),
    ],
)
def test_search_puts_the_topic_people_mean_first(guide: Guide, query: str, expected: str) -> None:
    found = [s.id for s in guide.search(query, limit=3)]
    assert found[:1] == [expected], found


def test_british_and_american_spellings_search_alike(guide: Guide) -> None:
    for british, american in [
        ("moisturiser", "moisturizer"),
        ("skin colour change", "skin color change"),
        ("paediatrician", "pediatrician"),
    ]:
        assert [s.id for s in guide.search(british)] == [s.id for s in guide.search(american)]
        assert content.query_terms(british) == content.query_terms(american)


def test_a_word_in_every_snippet_does_not_decide_the_ranking(guide: Guide) -> None:
    assert [s.id for s in guide.search("milia makeup")][:1] == ["makeup-and-milia"]
    assert [s.id for s in guide.search("skin sunscreen")][:1] == ["sun-protection"]


def test_typos_are_corrected_only_in_words_of_five_letters_or_more(guide: Guide) -> None:
    index = guide._index.ranking
    assert index.match("suncreen") == search.Match(("sunscreen",), search.FUZZY_FACTOR[1])
    assert index.match("zzzzzzzz") is None
    assert index.match("pne") is None  # "pen" is one letter off, but short words aren't guessed


def test_a_search_with_no_good_answer_offers_the_closest_topics_as_such(guide: Guide) -> None:
    found = guide.find("hair loss")
    assert found.matches == []
    assert found.closest, "the nearest topics are offered, labelled as the nearest"
    assert guide.search("hair loss") == []
    assert guide.find("bitcoin price").matches == []
    assert guide.find("zzzqqq") == content.Found([], [])
    sunscreen = guide.find("sunscreen")
    assert sunscreen.matches[0].id == "sun-protection"
    assert sunscreen.closest == []


def test_words_in_most_snippets_or_chat_make_no_answer_alone(guide: Guide) -> None:
    skin = guide.find("skin")  # in nearly every snippet: it can't pick one
    assert skin.matches == [] and skin.closest
    assert guide.find("thanks for the help") == content.Found([], [])
    assert guide.find("milia").matches[0].id == "what-milia-are"  # the topic's own title


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


def _problems(folder: Path, *, today: date | None = None) -> list[str]:
    return [f"{p.path.name}: {p.message}" for p in validate(folder, today=today)]


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


# --- references and review dates (issue 8) --------------------------------------------------

REVIEWED = date(2026, 12, 1)


def test_every_snippet_names_the_pages_it_rests_on(guide: Guide) -> None:
    for snippet in guide.snippets:
        assert snippet.references, snippet.id
        for reference in snippet.references:
            assert isinstance(reference, Reference)
            assert reference.title and reference.url.startswith("https://"), snippet.id


def _set_references(path: Path, block: str) -> None:
    text = path.read_text()
    start = text.index("references:\n")
    end = text.index("reviewed:")
    path.write_text(text[:start] + block + text[end:])


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "references:\n  - Cleveland Clinic\n",
            "reference 1 names no page: give a title and url",
        ),
        ("references: []\n", "references must list at least one page as {title, url}"),
        (
            "references:\n  - title: Milia\n    url: http://example.org/milia\n",
            "reference 1 url must be a https:// page address",
        ),
        (
            "references:\n  - url: https://dermnetnz.org/topics/milia\n",
            "reference 1 must have exactly a title and a url",
        ),
        (
            "references:\n  - title: ''\n    url: https://dermnetnz.org/topics/milia\n",
            "reference 1 has an empty title",
        ),
    ],
)
def test_validator_refuses_a_snippet_without_a_page_reference(
    broken: Path, block: str, message: str
) -> None:
    _set_references(broken / "home-care.md", block)
    _set_references(broken / "tips" / "sunscreen.md", block)
    problems = _problems(broken, today=REVIEWED)
    assert f"home-care.md: {message}" in problems
    assert f"sunscreen.md: {message}" in problems
    with pytest.raises(ContentError):
        load_guide(broken)


def test_validator_refuses_a_review_older_than_a_year(broken: Path) -> None:
    assert _problems(broken, today=REVIEWED) == []
    assert _problems(broken, today=date(2027, 12, 1)) == [], "exactly a year is still fine"
    stale = _problems(broken, today=date(2027, 12, 2))
    assert (
        "home-care.md: reviewed 2026-12-01 is more than a year ago; check it against its "
        "references again and update the date"
    ) in stale
    assert any(p.startswith("exfoliate.md: reviewed 2026-12-01 is more than") for p in stale)
    assert len(stale) == len(list(broken.rglob("*.md")))


def test_validator_refuses_a_review_date_in_the_future_or_not_a_date(broken: Path) -> None:
    _edit(broken / "home-care.md", "reviewed: 2026-12-01", "reviewed: 2062-12-01")
    _edit(broken / "dont-squeeze.md", "reviewed: 2026-12-01", "reviewed: soon")
    problems = _problems(broken, today=REVIEWED)
    assert "home-care.md: reviewed 2062-12-01 is in the future" in problems
    assert "dont-squeeze.md: reviewed must be a date like 2026-11-26" in problems


def test_a_stale_review_does_not_stop_the_bot_loading_the_guide(broken: Path) -> None:
    # The yearly review is enforced by `miliabot content validate` (CI), never by a restart.
    _edit(broken / "home-care.md", "reviewed: 2026-12-01", "reviewed: 2020-01-01")
    assert load_guide(broken).get("home-care") is not None
    assert any("home-care.md: reviewed 2020-01-01" in p for p in _problems(broken))


def test_shipped_content_was_reviewed_on_the_issue_8_review(guide: Guide) -> None:
    assert {s.reviewed for s in guide.snippets} == {REVIEWED}


# --- the corrections of issue 8 hold --------------------------------------------------------


def _bodies() -> dict[str, str]:
    return {
        path.stem: frontmatter.load(str(path)).content.lower().replace("\u2019", "'")
        for path in CONTENT.rglob("*.md")
    }


@pytest.mark.parametrize(
    "phrase",
    [
        "deeper and firmer",
        "sit deeper",
        "just as damaging",
        "just as the sun does",
        "a common trigger",
        "thicken",
        "many fade with time",
        "many still fade",
        "keep coming back",
    ],
)
def test_no_snippet_repeats_a_corrected_overstatement(phrase: str) -> None:
    assert [name for name, body in _bodies().items() if phrase in body] == []


def test_babies_snippet_sends_warning_signs_to_a_doctor_straight_away(guide: Guide) -> None:
    for snippet_id in ("milia-in-babies", "baby-look-alikes"):
        snippet = guide.get(snippet_id)
        assert snippet is not None
        text = snippet.plain
        assert "38 °C or more" in text and "under 3 months" in text
        assert "straight away" in text
        for sign in ("blisters", "pus", "unwell"):
            assert sign in text, (snippet_id, sign)
        assert "GP" in text and "paediatrician" in text and "emergency" in text


def test_adult_milia_are_not_promised_to_fade(guide: Guide) -> None:
    for snippet_id in ("what-milia-are", "dont-squeeze", "home-care", "how-long-milia-last"):
        snippet = guide.get(snippet_id)
        assert snippet is not None
        assert "months" in snippet.plain, snippet_id


def test_every_mention_of_retinoids_comes_with_the_pregnancy_caution() -> None:
    retinoid = re.compile(r"retinoid|adapalene|tretinoin|retinol")
    missing = [
        name for name, body in _bodies().items() if retinoid.search(body) and "pregnant" not in body
    ]
    assert missing == []
    # In the tips each line is sent on its own, so each line carries the caution itself.
    tips = (CONTENT / "tips").glob("*.md")
    lines = [line for path in tips for line in frontmatter.load(str(path)).content.splitlines()]
    assert [x for x in lines if retinoid.search(x) and "pregnant" not in x.lower()] == []


def test_prescription_status_of_retinoids_is_stated(guide: Guide) -> None:
    snippet = guide.get("retinoids-at-home")
    assert snippet is not None
    assert "Adapalene is sold without a prescription" in snippet.plain
    assert "Tretinoin needs a prescription" in snippet.plain


def test_every_mention_of_steroid_creams_says_not_to_stop_without_asking() -> None:
    missing = [
        name
        for name, body in _bodies().items()
        if "steroid" in body and not re.search(r"(do not|don't) stop .{0,40}without asking", body)
    ]
    assert missing == []


def test_sunscreen_advice_gives_the_amount_the_timing_and_the_baby_rule(guide: Guide) -> None:
    snippet = guide.get("sun-protection")
    assert snippet is not None
    for fact in ("two finger-lengths", "15 minutes before you go out", "under 6 months"):
        assert fact in snippet.plain
    tips = " ".join(guide.tips["sunscreen"])
    for fact in ("two finger-lengths", "15 minutes", "under 6 months"):
        assert fact in tips


def test_jargon_is_explained_where_it_is_used() -> None:
    for name, body in _bodies().items():
        if "non-comedogenic" in body:
            assert "clog pores" in body, name
    assert "variants of primary milia" in _bodies()["rare-milia-types"]
    assert "variants of primary milia" in _bodies()["types-of-milia"]


@pytest.mark.parametrize("brand", ["differin", "retin-a", "cerave", "the ordinary", "aquaphor"])
def test_no_snippet_names_a_brand(brand: str) -> None:
    assert [name for name, body in _bodies().items() if brand in body] == []


NEW_TOPICS = [
    "makeup-and-milia",
    "milia-after-procedures",
    "milia-look-alikes",
    "baby-look-alikes",
    "retinoids-at-home",
    "milia-removal-tools",
    "how-long-milia-last",
]


@pytest.mark.parametrize("snippet_id", NEW_TOPICS)
def test_new_topics_exist_and_other_snippets_link_to_them(guide: Guide, snippet_id: str) -> None:
    snippet = guide.get(snippet_id)
    assert snippet is not None
    linked_from = [s.id for s in guide.snippets if snippet_id in s.related]
    assert 1 <= len(linked_from) <= 3, linked_from
    # ...and links back to one of them, so a reader can return the way they came.
    assert set(snippet.related) & set(linked_from), (snippet.related, linked_from)


def test_look_alikes_say_which_one_is_contagious(guide: Guide) -> None:
    snippet = guide.get("milia-look-alikes")
    assert snippet is not None
    for name in ("Sebaceous hyperplasia", "Molluscum contagiosum", "Fordyce spots"):
        assert name in snippet.plain
    assert "contagious" in snippet.plain.split("Molluscum contagiosum", 1)[1][:200]
    babies = guide.get("baby-look-alikes")
    assert babies is not None
    for name in ("Baby acne", "Erythema toxicum", "Heat rash"):
        assert name in babies.plain


def test_a_year_before_a_leap_day_is_the_last_day_of_february() -> None:
    assert content._one_year_before(date(2028, 2, 29)) == date(2027, 2, 28)
    assert content._one_year_before(date(2027, 3, 1)) == date(2026, 3, 1)


def test_each_topic_shows_the_pages_it_rests_on_as_links(guide: Guide) -> None:
    from miliabot_tg.telegram_html import parse_html

    for snippet in guide.snippets:
        text, _keyboard = snippet_view(guide, snippet)
        foot = text.rsplit("\n\n", 1)[1]
        assert foot.startswith("<i>Sources:</i> "), snippet.id
        for reference in snippet.references:
            assert f'<a href="{reference.url}">' in foot
        parse_html(text)  # Telegram would accept it


def test_a_review_dated_tomorrow_in_utc_is_not_in_the_future(broken: Path) -> None:
    assert _problems(broken, today=date(2026, 11, 30)) == []
    assert "home-care.md: reviewed 2026-12-01 is in the future" in _problems(
        broken, today=date(2026, 11, 29)
    )


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
    match = search.Index.match

    def counting(index: search.Index, word: str) -> search.Match | None:
        scored.append(word)
        return match(index, word)

    monkeypatch.setattr(search.Index, "match", counting)
    guide.search(query)
    assert len(scored) <= content.MAX_TERMS
    assert len(set(scored)) == len(scored), "a repeated word is scored once"
    assert all(len(term) <= content.MAX_TERM_CHARS for term in scored)


class _NoScan(dict[Any, Any]):
    """A table a search may look things up in but never walk through."""

    def __iter__(self) -> Any:
        raise AssertionError("the vocabulary was scanned during a search")

    def items(self) -> Any:
        raise AssertionError("the vocabulary was scanned during a search")

    def keys(self) -> Any:
        raise AssertionError("the vocabulary was scanned during a search")

    def values(self) -> Any:
        raise AssertionError("the vocabulary was scanned during a search")


def test_a_search_never_rescans_the_vocabulary(guide: Guide) -> None:
    # A whole word, a prefix ("exfol", "dermatol") and a typo ("suncreen"): each is looked up in
    # tables made at load; a typo is compared only with the words of its first letter and length.
    index = guide._index
    ranking = index.ranking
    guarded = dataclasses.replace(
        index,
        ranking=dataclasses.replace(
            ranking,
            scores=_NoScan(ranking.scores),
            document_frequency=_NoScan(ranking.document_frequency),
            prefixes=_NoScan(ranking.prefixes),
            shapes=_NoScan(ranking.shapes),
        ),
    )
    query = "exfol dermatol newborn suncreen"
    found = content._find(guarded, content.query_terms(query), 5)
    assert found == guide.find(query)
    assert found.matches or found.closest
    widest = max(len(words) for words in ranking.shapes.values())
    assert widest < len(ranking.scores) / 10, "typo candidates are a small slice of the words"


def test_query_terms_are_distinct_counted_and_capped() -> None:
    repeated = "sunscreen " * 400
    assert content.query_terms(repeated) == {"sunscreen": content.MAX_QUERY_CHARS // 10}
    many = " ".join(f"word{i}" for i in range(100))
    assert list(content.query_terms(many)) == [f"word{i}" for i in range(content.MAX_TERMS)]
    assert content.query_terms("milia " + "y" * (content.MAX_TERM_CHARS + 1)) == {"milia": 1}


def test_search_reads_only_the_start_of_a_long_message(guide: Guide) -> None:
    assert guide.search("sunscreen")
    assert guide.search(" " * content.MAX_QUERY_CHARS + "sunscreen") == []
