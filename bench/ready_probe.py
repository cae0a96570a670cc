"""Run `miliabot run` unchanged and say when the bot is ready to dispatch.

"Ready" is the moment the dispatcher's first cycle returns: by then `miliabot run` has read
its settings, loaded and validated the guide, opened the database and checked its schema,
built the application, called getMe, run post_init (setMyCommands, dispatcher started on
the JobQueue), started polling and the JobQueue, and the dispatcher has looked at the
database once. The only change is a wrapper around `Dispatcher.run_cycle` that prints one
JSON line on stdout the first time it returns: CLOCK_MONOTONIC timestamps (comparable with
the parent's, Linux's monotonic clock is system-wide) and this process's own peak RSS so far
(``VmHWM``; ``ru_maxrss`` would carry over the parent's size, see `bench.procfs`).

Used by `bench.startup` as a child process; not a benchmark of its own.
"""

import time

_STARTED = time.monotonic()

import json  # noqa: E402 (the first timestamp is taken before any import)
import sys  # noqa: E402

import miliabot_tg.app  # noqa: E402, F401 (cli imports it late; imported here to time imports)
from bench.procfs import own_peak_rss_kib  # noqa: E402
from miliabot_tg.cli import main  # noqa: E402
from miliabot_tg.dispatch import Dispatcher  # noqa: E402

_IMPORTED = time.monotonic()
_original = Dispatcher.run_cycle
_reported = False


async def _run_cycle(self: Dispatcher) -> int:
    global _reported
    attempted = await _original(self)
    if not _reported:
        _reported = True
        report = {
            "probe_started_at": _STARTED,
            "imported_at": _IMPORTED,
            "ready_at": time.monotonic(),
            "rss_kib": own_peak_rss_kib(),
            "attempted": attempted,
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    return attempted


Dispatcher.run_cycle = _run_cycle  # type: ignore[method-assign]

if __name__ == "__main__":
    main(["run"])
