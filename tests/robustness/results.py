"""The suite's figures: each test records what it counted; the run ends with one JSON line.

`make test` runs the suite at CI size; `make soak` (bench/soak.py) sets MILIABOT_SOAK=1 for
the big numbers. Figures are appended as JSON lines to the file named by
MILIABOT_ROBUSTNESS_RESULTS when set (the soak runner reads it back), and kept in memory
for the pytest summary either way.
"""

import json
import os
from typing import Final

RESULTS_ENV: Final = "MILIABOT_ROBUSTNESS_RESULTS"
SOAK_ENV: Final = "MILIABOT_SOAK"
# The keys of the final JSON line, summed over all records except duplicates_max. A trial is
# one SIGKILL of a bot process (test_crashes.py); the other tests count their own figures.
KEYS: Final = (
    "trials",
    "lost",
    "duplicates_max",
    "unhandled_errors",
    "cross_user_accesses",
    "fuzz_cases",
)

ROWS: list[dict[str, object]] = []


def soak() -> bool:
    """Whether this is the long run (`make soak`)."""
    return os.environ.get(SOAK_ENV) == "1"


def size(ci: int, long: int) -> int:
    """The CI number, or the soak one."""
    return long if soak() else ci


def record(kind: str, **figures: int) -> None:
    """Keep one test's (or trial's) figures, e.g. record("crash", trials=1, lost=0)."""
    row: dict[str, object] = {"kind": kind, **figures}
    ROWS.append(row)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def _int(row: dict[str, object], key: str) -> int:
    value = row.get(key, 0)
    return value if isinstance(value, int) else 0


def summary(rows: list[dict[str, object]]) -> dict[str, int]:
    """The final figures: sums, and the largest duplicate count of any trial."""
    totals = {key: sum(_int(row, key) for row in rows) for key in KEYS}
    totals["duplicates_max"] = max((_int(row, "duplicates") for row in rows), default=0)
    return totals


def lines(rows: list[dict[str, object]]) -> list[str]:
    """One readable line per record, then the JSON line."""
    out = []
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in row.items() if k != "kind")
        out.append(f"{row['kind']}: {figures}")
    out.append(json.dumps(summary(rows)))
    return out


def read(path: str) -> list[dict[str, object]]:
    """The records a run appended to `path`."""
    with open(path, encoding="utf-8") as source:
        return [json.loads(line) for line in source if line.strip()]
