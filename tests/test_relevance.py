"""The guide search holds to the relevance set in tests/relevance.yaml (issue 8).

The set was written, in the words people use, before the ranking was tuned; this test keeps
the ranking at the issue's figures and prints every miss when it falls short.
"""

import pytest
from bench.search import Case, evaluate, load_cases

from miliabot_tg.content import Guide, load_guide
from miliabot_tg.paths import bundled_dir

TOP1, TOP3 = 0.90, 0.97


@pytest.fixture(scope="module")
def guide() -> Guide:
    return load_guide(bundled_dir("content"))


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return load_cases()


def test_the_set_is_as_the_issue_asks(guide: Guide, cases: list[Case]) -> None:
    answerable = [c for c in cases if c.right]
    assert len(answerable) >= 100
    assert len(cases) - len(answerable) >= 10, "searches with no good answer"
    assert len({c.query for c in cases}) == len(cases), "a search is listed once"
    unknown = {i for c in cases for i in c.right if guide.get(i) is None}
    assert unknown == set(), "right answers name snippets that exist"


def test_the_right_answer_comes_first(guide: Guide, cases: list[Case]) -> None:
    result = evaluate(guide, cases)
    report = "\n".join(result.misses)
    assert result.top1 >= TOP1, f"first result right for {result.top1:.1%}; misses:\n{report}"
    assert result.top3 >= TOP3, f"a right answer in the top 3 for {result.top3:.1%}:\n{report}"


def test_searches_with_no_good_answer_say_so(guide: Guide, cases: list[Case]) -> None:
    result = evaluate(guide, cases)
    assert result.wrongly_answered == [], "\n".join(result.wrongly_answered)
    assert result.no_answer_declined == result.no_answer
