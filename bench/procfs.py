"""A process's own memory figures from /proc/self/status (standard library only).

Not ``resource.getrusage(...).ru_maxrss``: on Linux a child starts with its parent's maximum
(it survives fork and exec), so a benchmark whose parent first built a large database in
memory would report the parent's size. ``VmHWM`` is the peak of this process's own address
space, which exec replaces. Kept free of project imports so that the start-up probes can use
it without loading more than they measure.
"""

from pathlib import Path


def status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status, such as ``VmHWM`` (peak RSS) or ``VmRSS``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise LookupError(f"/proc/self/status has no {field}")


def own_peak_rss_kib() -> int:
    """This process's own peak resident set size so far, in KiB."""
    return status_kib("VmHWM")
