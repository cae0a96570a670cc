"""What Docker would run, checked without a Docker engine: the compose file and the wheel."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from miliabot_tg.cli import _parser
from miliabot_tg.lifecycle import STOP_WITHIN

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_runs_migrate_once_then_the_bot_on_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "bot"}
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["bot"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("migrate", "bot"):
        service = services[name]
        assert service["environment"]["MILIABOT_DATABASE_URL"].startswith("postgresql://")
        # Each command must be one the image's entrypoint understands.
        _parser().parse_args(service["command"])
    assert "MILIABOT_TOKEN" in services["bot"]["environment"]


def test_dockerfile_entrypoint_is_the_miliabot_command() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert 'ENTRYPOINT ["miliabot"]' in lines
    assert 'CMD ["run"]' in lines


def test_sigterm_reaches_the_bot_and_it_has_time_to_stop_cleanly() -> None:
    # Exec form (JSON): python is the process Docker signals, not a `/bin/sh -c` that
    # would swallow SIGTERM and leave the bot to be killed after the grace period.
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith(("ENTRYPOINT", "CMD")):
            instruction, _, argument = line.partition(" ")
            assert argument.startswith("["), f"{instruction} must be in exec form: {line}"
        assert not line.startswith("STOPSIGNAL"), "the bot stops on SIGTERM, Docker's default"
    bot = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["bot"]
    assert bot.get("init") is True
    assert bot.get("stop_signal", "SIGTERM") == "SIGTERM"
    grace = bot["stop_grace_period"]
    assert grace.endswith("s")
    # Docker's default is 10 s; the bot bounds its own stop at STOP_WITHIN.
    assert float(grace[:-1]) >= max(10.0, STOP_WITHIN + 5)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel as the Dockerfile does and unpack it into a bare folder."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    target = tmp_path_factory.mktemp("site")
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return target


def _from_wheel(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _python_from_wheel(site, "-m", "miliabot_tg", *args, cwd=cwd)


def _python_from_wheel(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install in the venv
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_installed_wheel_carries_its_content_and_migrations(
    installed_wheel: Path, tmp_path: Path
) -> None:
    package = installed_wheel / "miliabot_tg"
    assert (package / "content" / "what-milia-are.md").is_file()
    assert (package / "migrations" / "env.py").is_file()
    validated = _from_wheel(installed_wheel, "content", "validate", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert str(package / "content") in validated.stdout


def test_the_installed_wheel_carries_the_place_table_for_timezone_lookups(
    installed_wheel: Path, tmp_path: Path
) -> None:
    package = installed_wheel / "miliabot_tg"
    assert (package / "places.tsv").is_file()
    # Mumbai is in no IANA zone name: only places.tsv knows it.
    script = (
        "from miliabot_tg import timezones; "
        "print(timezones.__file__); print(timezones.resolve_timezone('Mumbai').key)"
    )
    looked_up = _python_from_wheel(installed_wheel, "-c", script, cwd=tmp_path)
    assert looked_up.returncode == 0, looked_up.stderr
    module_file, key = looked_up.stdout.splitlines()
    assert Path(module_file).is_relative_to(package)
    assert key == "Asia/Kolkata"


def test_the_installed_wheel_migrates_and_refuses_to_run_without_a_token(
    installed_wheel: Path, tmp_path: Path
) -> None:
    migrated = _from_wheel(installed_wheel, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "miliabot.sqlite3").is_file()
    run = _from_wheel(installed_wheel, "run", cwd=tmp_path)
    assert run.returncode == 2
    assert "MILIABOT_TOKEN is not set" in run.stderr
