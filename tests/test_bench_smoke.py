"""The benchmarks still run: each with --quick, its last line one JSON object of figures.

Only the shape and sanity of the figures are checked here; the targets are for `make bench`
on a quiet machine, not for CI.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str, may_be_zero: frozenset[str] = frozenset()) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) > 1, "readable figures come before the JSON line"
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict)
    for key, value in figures.items():
        assert isinstance(value, int | float) and math.isfinite(value), (key, value)
        assert value > 0 or (key in may_be_zero and value == 0), (key, value)
    return figures


def test_startup_benchmark_reports_ready_time_and_memory(tmp_path: Path) -> None:
    figures = _run("bench.startup", "--cache-dir", str(tmp_path))
    assert set(figures) == {
        "reminders",
        "ready_s",
        "rss_mib",
        "jobqueue_reminders",
        "jobqueue_ready_s",
        "jobqueue_rss_mib",
    }
    assert figures["reminders"] > figures["jobqueue_reminders"]
    assert figures["ready_s"] < 120 and figures["jobqueue_ready_s"] < 120
    assert 10 < figures["rss_mib"] < 4096 and 10 < figures["jobqueue_rss_mib"] < 4096


@pytest.mark.postgres
def test_dispatch_benchmark_reports_rates_on_both_databases() -> None:
    figures = _run("bench.dispatch")
    assert set(figures) == {
        "sqlite_per_s",
        "postgres_per_s",
        "bare_ptb_per_s",
        "sqlite_ratio",
        "postgres_ratio",
    }
    # Each ratio is against the bare runs beside that database's run, not their overall mean.
    for db in ("sqlite", "postgres"):
        overall = figures[f"{db}_per_s"] / figures["bare_ptb_per_s"]
        assert overall / 3 < figures[f"{db}_ratio"] < overall * 3


def test_punctuality_benchmark_reports_lateness() -> None:
    figures = _run("bench.punctuality")
    assert set(figures) == {"p50_s", "p99_s"}
    assert figures["p50_s"] <= figures["p99_s"] < 60


def test_broadcast_pacing_benchmark_reports_the_rate_it_achieved() -> None:
    figures = _run("bench.broadcasts", "pacing", may_be_zero=frozenset({"responses_429"}))
    assert set(figures) == {"configured_per_s", "achieved_per_s", "responses_429"}
    assert 0 < figures["achieved_per_s"] <= figures["configured_per_s"] * 1.1


def test_broadcast_memory_benchmark_reports_growth_over_idle() -> None:
    figures = _run("bench.broadcasts", "memory", may_be_zero=frozenset({"rss_growth_mib"}))
    assert set(figures) == {"recipients", "rss_growth_mib"}
    assert figures["recipients"] > 0
    assert figures["rss_growth_mib"] < 1024


def test_reminders_during_broadcast_benchmark_reports_lateness() -> None:
    figures = _run("bench.broadcasts", "during")
    assert set(figures) == {"during_broadcast_p99_s", "during_broadcast_max_s"}
    assert figures["during_broadcast_p99_s"] <= figures["during_broadcast_max_s"] < 60


def test_flood_benchmark_reports_other_users_latency_and_search_cost() -> None:
    figures = _run("bench.flood")
    assert set(figures) == {"flood_other_p99_s", "search_worst_ms"}
    assert figures["flood_other_p99_s"] < 60
    assert figures["search_worst_ms"] < 10_000


def test_search_benchmark_reports_relevance_and_time() -> None:
    figures = _run("bench.search")
    assert set(figures) == {"search_top1", "search_top3", "search_mean_ms", "search_p99_ms"}
    assert 0 < figures["search_top1"] <= figures["search_top3"] <= 1
    assert figures["search_mean_ms"] <= figures["search_p99_ms"]


def test_webhook_benchmark_reports_rate_and_latency() -> None:
    figures = _run("bench.webhook")
    assert set(figures) == {"webhook_updates_per_s", "webhook_p99_ms"}
    assert 0 < figures["webhook_updates_per_s"] < 1000
    assert figures["webhook_p99_ms"] > 0


def test_chart_benchmark_reports_render_times(tmp_path: Path) -> None:
    out = tmp_path / "chart.png"
    figures = _run("bench.charts", "--out", str(out))
    assert set(figures) == {
        "renders",
        "chart_first_ms",
        "chart_p50_ms",
        "chart_p99_ms",
        "chart_cpu_p50_ms",
        "png_kib",
    }
    assert figures["chart_p50_ms"] <= figures["chart_p99_ms"] < 60_000
    assert out.read_bytes().startswith(b"\x89PNG")
