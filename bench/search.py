"""Guide search: how often the right topic comes first, and what a search costs.

The searches are those of tests/relevance.yaml, written in the words people use before the
ranking was tuned. `search_top1` is the share of the answerable ones whose first result is a
right answer; `search_top3`, a right answer among the first three. A search that the guide
judges to have no good answer (it offers only "the closest topics") counts as a miss for an
answerable query, and as a hit of the "no good match" path for the queries with no answer.

The time per query is CPU time (`time.thread_time`) of `Guide.find`, the index built first,
over every query of the set, repeated; mean and p99 in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import ROOT, BenchError, emit, machine, percentile
from miliabot_tg.content import Guide, load_guide
from miliabot_tg.paths import bundled_dir

RELEVANCE = ROOT / "tests" / "relevance.yaml"
FULL_ROUNDS, QUICK_ROUNDS = 50, 3


@dataclass(frozen=True)
class Case:
    """One search and the snippet ids that would be right answers (none: no good answer)."""

    query: str
    right: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    """How the guide's search did on the relevance set."""

    answerable: int
    top1: float  # share of answerable searches whose first answer is right
    top3: float  # share with a right answer among the first three
    no_answer: int
    no_answer_declined: int  # how many of the no-answer searches got the "no good match" path
    misses: list[str]  # a line per answerable search whose first answer is not right
    wrongly_answered: list[str]  # a line per no-answer search that was answered anyway


def load_cases(path: Path = RELEVANCE) -> list[Case]:
    """Read the relevance set."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list) or not raw:
        raise BenchError(f"{path} holds no list of searches")
    return [Case(str(item["q"]), tuple(item["ids"])) for item in raw]


def evaluate(guide: Guide, cases: Sequence[Case]) -> Evaluation:
    """Search for every case and score the answers against the right ones."""
    top1 = top3 = declined = 0
    misses: list[str] = []
    wrong: list[str] = []
    answerable = [c for c in cases if c.right]
    for case in cases:
        found = guide.find(case.query, limit=5)
        answers = [s.id for s in found.matches]
        if not case.right:
            if answers:
                wrong.append(f"{case.query!r}: answered with {answers[:3]}")
            else:
                declined += 1
            continue
        if answers[:1] and answers[0] in case.right:
            top1 += 1
            top3 += 1
            continue
        if set(answers[:3]) & set(case.right):
            top3 += 1
        shown = answers[:3] or [f"(no good match; closest {[s.id for s in found.closest[:3]]})"]
        misses.append(f"{case.query!r}: wanted {list(case.right)}, got {shown}")
    count = max(len(answerable), 1)
    return Evaluation(
        answerable=len(answerable),
        top1=top1 / count,
        top3=top3 / count,
        no_answer=len(cases) - len(answerable),
        no_answer_declined=declined,
        misses=misses,
        wrongly_answered=wrong,
    )


def search_times(guide: Guide, cases: Sequence[Case], rounds: int) -> list[float]:
    """CPU ms of each search, every query `rounds` times."""
    guide.find("warm up")
    times: list[float] = []
    for _ in range(rounds):
        for case in cases:
            before = time.thread_time()
            guide.find(case.query, limit=5)
            times.append((time.thread_time() - before) * 1000)
    return times


def main(argv: Sequence[str] | None = None) -> None:
    """Run the search benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of timing (smoke test)")
    args = parser.parse_args(argv)
    guide = load_guide(bundled_dir("content"))
    cases = load_cases()
    result = evaluate(guide, cases)
    print(f"search benchmark on {machine()}")
    print(
        f"relevance set: {len(cases)} searches, {result.answerable} with right answers, "
        f"{result.no_answer} with none ({RELEVANCE.relative_to(ROOT)})"
    )
    print(f"  first result right: {result.top1:.1%}  [target >= 90%]")
    print(f"  a right answer in the first three: {result.top3:.1%}  [target >= 97%]")
    print(f"  no good answer, and said so: {result.no_answer_declined} of {result.no_answer}")
    for line in result.misses + result.wrongly_answered:
        print(f"    miss: {line}")
    times = search_times(guide, cases, QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    mean, p99 = statistics.fmean(times), percentile(times, 99)
    print(f"time per search (CPU, {len(times)} searches): mean {mean:.3f} ms, p99 {p99:.3f} ms")
    emit(
        {
            "search_top1": round(result.top1, 4),
            "search_top3": round(result.top3, 4),
            "search_mean_ms": round(mean, 4),
            "search_p99_ms": round(p99, 4),
        }
    )


if __name__ == "__main__":
    main()
