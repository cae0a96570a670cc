"""Rank the guide's snippets for what a person types: BM25F, a stemmer, and typo correction.

What was chosen and why:

- **Ranking: BM25F**, the standard BM25 extended to fields (Robertson & Zaragoza, "The
  Probabilistic Relevance Framework: BM25 and Beyond", 2009). A word in a snippet's title
  counts 3 times, in its keywords 2.5 times, in its body once, each field normalised by its
  own length, and every word is weighted by BM25's idf: "milia" or "skin", in nearly every
  snippet, weigh almost nothing, so they can't decide the ranking. It is a dozen lines here
  rather than `rank_bm25`, because that package has no fields (a title hit would count no more
  than a passing mention), pulls in numpy (start-up memory is measured) and has not had a
  release since 2022; `bm25s` needs numpy and scipy too. With 27 snippets, each stem's score
  in each snippet is computed once at load, so a search adds up at most MAX_TERMS small dicts.
- **Stemming: `snowballstemmer`**, the English (Porter2) Snowball stemmer, kept up to date
  (Sphinx depends on it): "babies", "babys" and "baby" meet at "babi", "exfoliating" and
  "exfoliation" at "exfoli". With `PyStemmer` installed (a dependency) it runs the same
  Snowball code compiled, about 1 µs a word instead of about 60; the guide's words are
  stemmed once at load either way.
- **Spelling: a British/American map** applied to the guide and to queries alike before
  stemming ("moisturiser" ~ "moisturizer", "colour" ~ "color", "paediatrician" ~
  "pediatrician"): a stemmer does not join them, and a general "-ise" rule would mangle
  "exercise" and "advise".
- **Typos: `rapidfuzz`**, a maintained C++ library. A word of 5 letters or more that is not
  in the guide is matched to the closest word of the guide's vocabulary within 2 edits
  (optimal string alignment, so a swap of two letters is one edit: "exfoilate"); ties go to
  the word more snippets use. Only words with the same first letter and a length within 2
  are compared (people rarely mistype the first letter), from lists made at load. A corrected
  word counts a little less than a word typed right.
- **Prefixes**: a word of 3 letters or more that is not in the guide but starts guide words
  ("exfol") matches them, from a table made at load.

Whether the results answer the query at all, or are only the closest topics, is decided by
`Ranking.confidence`: the best document's score as a share of the most the query's words
could score (a word the guide doesn't have counts as a missed match of the rarest kind). The
threshold, CONFIDENT = 0.45, was calibrated on the 12 searches of tests/relevance.yaml that
have no good answer: the highest of them ("hair loss", half its words unknown) is at 0.40;
of the answerable ones, all but one ("mila under eyes", 0.43) are at 0.55 or more. A best
score under MIN_ANSWER_SCORE is no answer either: only words found in most snippets matched.
"""

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import snowballstemmer
from rapidfuzz import process
from rapidfuzz.distance import OSA

# Field weights and BM25's usual constants: k1 saturates repeated words, b normalises length.
TITLE_WEIGHT, KEYWORDS_WEIGHT, BODY_WEIGHT = 3.0, 2.5, 1.0
K1 = 1.2
B = 0.75
MIN_PREFIX = 3  # a typed prefix of three letters or more ("exfol") matches whole words
MIN_FUZZY = 5  # only words this long are corrected: shorter ones have too many neighbours
MAX_EDITS = 2
TITLE_BONUS = 1.0  # added to a topic when the query's words are exactly its title's
# Below this best score only words in most snippets ("skin": idf < 0.25 means in more than
# about 80 % of them) have matched: they can't make an answer on their own.
MIN_ANSWER_SCORE = 0.25
CONFIDENT = 0.45  # see the module docstring: calibrated on the no-answer searches
FUZZY_FACTOR = {1: 0.8, 2: 0.6}  # a corrected word counts a little less than a word typed right

# Words that carry no topic: question words, pronouns, fillers. Domain words that do ("under"
# the eyes, "after" a peel, "too" much, how "long") are not here, and neither are "milia" or
# "skin": idf makes them weigh almost nothing, yet they still tell "milia" from nonsense.
STOPWORDS = frozenset(
    """
    a about again all also am an and any anything are as at be been being but by bye can
    cant could did do does doing dont done each even ever every few for from get gets
    getting got had has have having he hello her hers herself hey hi him his how i id if im
    in into is isnt it its ive just like lot lots maybe me mine my myself no nor of ok okay
    on once only or other our ours own please really same she should so some someone
    something still stuff such than thank thanks that the their theirs them then there
    these they thing things this those to us very was wasnt we were what whats when where
    help helps tell know want need think question wonder wondering
    versus vs which while who whom will with wont would yeah yes you youre your yours
    yourself between
    """.split()
)

# British spellings on the left become the American ones on the right, in the guide and in
# queries alike, before stemming.
SPELLINGS: Mapping[str, str] = {
    "moisturiser": "moisturizer",
    "moisturisers": "moisturizers",
    "moisturise": "moisturize",
    "moisturised": "moisturized",
    "moisturises": "moisturizes",
    "moisturising": "moisturizing",
    "colour": "color",
    "colours": "colors",
    "coloured": "colored",
    "discolouration": "discoloration",
    "paediatrician": "pediatrician",
    "paediatricians": "pediatricians",
    "paediatric": "pediatric",
    "centre": "center",
    "centres": "centers",
    "tumour": "tumor",
    "tumours": "tumors",
    "anaesthetic": "anesthetic",
    "oestrogen": "estrogen",
    "haemorrhage": "hemorrhage",
    "labelled": "labeled",
    "sunburnt": "sunburned",
    "ageing": "aging",
    "sulphur": "sulfur",
    "fibre": "fiber",
    "grey": "gray",
    "mould": "mold",
    "minimise": "minimize",
    "minimising": "minimizing",
    "optimise": "optimize",
    "sanitise": "sanitize",
    "sanitiser": "sanitizer",
    "sterilise": "sterilize",
    "sterilised": "sterilized",
    "cauterise": "cauterize",
    "cauterisation": "cauterization",
    "favourite": "favorite",
    "behaviour": "behavior",
    "practise": "practice",
    "licence": "license",
    "tyre": "tire",
    "mum": "mom",
    "nappy": "diaper",
}

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_stemmer = snowballstemmer.stemmer("english")


def fold(text: str) -> str:
    """Lower case; accents, ligatures folded to ASCII, apostrophes dropped ("Don't": "dont")."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return folded.replace("'", "")


def surface_words(text: str) -> list[str]:
    """The words of `text`, folded, spelled the American way, stopwords dropped.

    A hyphenated word gives its joined form and its parts ("make-up": "makeup", "make",
    "up"), so that either way of writing it meets the other.
    """
    words: list[str] = []
    for token in _WORD.findall(fold(text)):
        parts = token.split("-")
        for word in [*parts, "".join(parts)] if len(parts) > 1 else parts:
            if word not in STOPWORDS:
                words.append(SPELLINGS.get(word, word))
    return words


def stem(word: str) -> str:
    """The Porter2 stem of a surface word."""
    return str(_stemmer.stemWord(word))


@dataclass(frozen=True)
class Document:
    """What the ranking reads of a snippet."""

    id: str
    title: str
    keywords: str
    body: str


@dataclass(frozen=True)
class Match:
    """How a query word was found in the guide."""

    stems: tuple[str, ...]
    factor: float  # 1 for a word typed right; less for a corrected typo


@dataclass(frozen=True)
class Index:
    """Everything a search reads, made once when the guide is loaded."""

    order: tuple[str, ...]  # document ids in the guide's order: ties go to the earlier
    # stem -> {document id: BM25F score of that stem in that document}
    scores: dict[str, dict[str, float]]
    # how many documents use each stem: typo corrections prefer the more common word
    document_frequency: dict[str, int]
    # prefix of 3+ letters -> the stems of the guide words that start with it
    prefixes: dict[str, tuple[str, ...]]
    # (first letter, length) -> the guide's surface words of that shape, for typo correction
    shapes: dict[tuple[str, int], tuple[str, ...]]
    stems: dict[str, str]  # the guide's surface words -> their stems
    titles: dict[str, frozenset[str]]  # document id -> the stems of its title
    best_score: float  # the highest score any one word has in any document

    def match(self, word: str) -> Match | None:
        """Find a query word in the guide: as typed, as a prefix, or as a corrected typo."""
        stemmed = stem(word)
        if stemmed in self.scores:
            return Match((stemmed,), 1.0)
        if len(word) >= MIN_PREFIX and word in self.prefixes:
            return Match(self.prefixes[word], 1.0)
        if len(word) >= MIN_FUZZY:
            return self._correct(word)
        return None

    def _correct(self, word: str) -> Match | None:
        best: tuple[int, int, str] | None = None
        for length in range(len(word) - MAX_EDITS, len(word) + MAX_EDITS + 1):
            candidates = self.shapes.get((word[0], length), ())
            found = process.extract(
                word, candidates, scorer=OSA.distance, score_cutoff=MAX_EDITS, limit=None
            )
            for candidate, distance, _ in found:
                stemmed = self.stems[candidate]
                key = (int(distance), -self.document_frequency[stemmed], stemmed)
                if best is None or key < best:
                    best = key
        if best is None:
            return None
        distance, _, stemmed = best
        return Match((stemmed,), FUZZY_FACTOR[distance])

    def term_scores(self, word: str) -> tuple[Match | None, dict[str, float]]:
        """How a query word matched, and each document's score for it (only those that have it)."""
        found = self.match(word)
        if found is None:
            return None, {}
        if len(found.stems) == 1:
            return found, {d: found.factor * s for d, s in self.scores[found.stems[0]].items()}
        # A prefix: each document scores as its best word starting with it.
        best: dict[str, float] = {}
        for stemmed in found.stems:
            for document, score in self.scores[stemmed].items():
                best[document] = max(best.get(document, 0.0), score)
        return found, best

    def rank(self, terms: Iterable[str]) -> "Ranking":
        """Score the documents for the query words (each distinct word once)."""
        totals: dict[str, float] = {}
        stems: set[str] = set()
        ceiling = 0.0
        for word in dict.fromkeys(terms):
            found, scores = self.term_scores(word)
            if found is None:
                ceiling += self.best_score  # what this word could have scored, had it matched
                continue
            stems.update(found.stems)
            ceiling += max(scores.values()) / found.factor
            for document, score in scores.items():
                totals[document] = totals.get(document, 0.0) + score
        # A query that is a topic's title asks for that topic ("what are milia").
        for document, title in self.titles.items():
            if title == stems:
                totals[document] = totals.get(document, 0.0) + TITLE_BONUS
        position = {d: n for n, d in enumerate(self.order)}
        ranked = sorted(totals, key=lambda d: (-totals[d], position[d]))
        results = [(d, totals[d]) for d in ranked if totals[d] > 0]
        confidence = min(1.0, results[0][1] / ceiling) if results and ceiling else 0.0
        return Ranking(results, confidence)


@dataclass(frozen=True)
class Ranking:
    """The documents that matched a query, best first, and how well the best one answers it."""

    results: list[tuple[str, float]]  # (document id, score), best first, all scores > 0
    # The best score as a share of what the query's words could score at most (an unknown
    # word counted as a perfect match of a rare one): 1 when the best document has the best
    # of every word, low when most of the query is about something the guide doesn't cover.
    confidence: float

    @property
    def answers(self) -> bool:
        """Whether the best results answer the query, rather than being merely the closest."""
        return bool(self.results) and (
            self.confidence >= CONFIDENT and self.results[0][1] >= MIN_ANSWER_SCORE
        )


def build(documents: Iterable[Document]) -> Index:
    """Index the documents for BM25F ranking."""
    docs = list(documents)
    # per document, the stem counts of its title, keywords and body
    fields: list[list[Counter[str]]] = []
    surfaces: set[str] = set()
    for doc in docs:
        counts = []
        for text in (doc.title, doc.keywords, doc.body):
            words = surface_words(text)
            surfaces.update(words)
            counts.append(Counter(stem(w) for w in words))
        fields.append(counts)
    count = max(len(docs), 1)
    average = [max(sum(sum(f[i].values()) for f in fields) / count, 1.0) for i in range(3)]
    weights = (TITLE_WEIGHT, KEYWORDS_WEIGHT, BODY_WEIGHT)
    frequency: Counter[str] = Counter()
    for counts in fields:
        frequency.update(set().union(*counts))
    scores: dict[str, dict[str, float]] = {}
    for doc, counts in zip(docs, fields, strict=True):
        lengths = [sum(f.values()) for f in counts]
        for stemmed in set().union(*counts):
            weighted = sum(
                weights[i] * counts[i][stemmed] / (1 - B + B * lengths[i] / average[i])
                for i in range(3)
            )
            df = frequency[stemmed]
            idf = math.log(1 + (count - df + 0.5) / (df + 0.5))
            scores.setdefault(stemmed, {})[doc.id] = idf * weighted / (K1 + weighted)
    bests = [max(s.values()) for s in scores.values()]
    starts: dict[str, set[str]] = {}
    shapes: dict[tuple[str, int], list[str]] = {}
    for word in sorted(surfaces):
        for end in range(MIN_PREFIX, len(word)):
            starts.setdefault(word[:end], set()).add(stem(word))
        shapes.setdefault((word[0], len(word)), []).append(word)
    return Index(
        order=tuple(d.id for d in docs),
        scores=scores,
        document_frequency=dict(frequency),
        prefixes={p: tuple(sorted(s)) for p, s in starts.items()},
        shapes={k: tuple(v) for k, v in shapes.items()},
        stems={w: stem(w) for w in surfaces},
        titles={d.id: frozenset(f[0]) for d, f in zip(docs, fields, strict=True)},
        best_score=max(bests, default=1.0),
    )
