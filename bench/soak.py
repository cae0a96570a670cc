"""`make soak`: the robustness suite (tests/robustness) at full size, then its figures.

Runs pytest on the suite with MILIABOT_SOAK=1 (20 crash trials of 20,000 reminders and a
10,000-recipient broadcast, 10,000 fuzz cases, ...), collects what every test recorded,
prints one readable line per record and a final JSON line with the keys `trials`, `lost`,
`duplicates_max`, `unhandled_errors`, `cross_user_accesses` and `fuzz_cases`. The exit
status is pytest's. `python -m bench.soak --ci` runs the CI size instead. Before the JSON
line: the machine, its load average and the wall time of the run.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.robustness.results import RESULTS_ENV, SOAK_ENV, lines, read

from bench.common import machine

SUITE = Path(__file__).resolve().parent.parent / "tests" / "robustness"


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        results = str(Path(scratch) / "results.jsonl")
        Path(results).touch()
        env = {**os.environ, RESULTS_ENV: results, SOAK_ENV: "0" if "--ci" in argv else "1"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=20"]
        command.append(str(SUITE))
        started = time.monotonic()
        # Our own interpreter running our own suite: nothing untrusted in the command.
        status = subprocess.run(command, env=env, check=False).returncode  # noqa: S603
        wall = time.monotonic() - started
        *figures, final = lines(read(results))
        for line in figures:
            print(line, flush=True)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {machine()}; load average now {load}", flush=True)
        print(f"wall time: {int(wall // 60)} min {int(wall % 60)} s", flush=True)
        print(final, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
