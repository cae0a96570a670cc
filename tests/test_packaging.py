"""What Docker would run, checked without a Docker engine: the compose file and the wheel."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from miliabot_tg.cli import _parser
from miliabot_tg.config import Settings
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


def _compose() -> Any:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_postgres_keeps_its_data_and_says_when_it_is_ready() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "postgres-data" in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_compose_bot_waits_for_the_database_and_the_migration_and_checks_its_health() -> None:
    services = _compose()["services"]
    bot, migrate = services["bot"], services["migrate"]
    assert bot["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}, "one-shot: it serves no /healthz"
    check = bot["healthcheck"]
    assert "/healthz" in " ".join(check["test"])
    assert bot["environment"]["MILIABOT_LISTEN"].endswith(":8080")
    assert "8080" in bot["expose"]
    # Polling by default: webhook settings come only from .env, never forced here.
    assert not any("WEBHOOK" in k for k in bot["environment"])
    assert {".env"} == {e["path"] for e in bot["env_file"]}


def _dockerfile() -> list[str]:
    """Instructions, with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_dockerfile_installs_pinned_hashed_dependencies_on_a_slim_base_as_non_root() -> None:
    lines = _dockerfile()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert stages and all(re.match(r"FROM python:3\.\d+-slim\b", s) for s in stages)
    final = lines[lines.index(stages[-1]) :]
    installs = [line for line in final if line.startswith("RUN ") and "pip install" in line]
    assert any("--require-hashes" in i and "-r /tmp/requirements.lock" in i for i in installs)
    assert "COPY requirements.lock /tmp/requirements.lock" in final
    # The project's own wheel adds no unpinned dependency.
    assert all("--require-hashes" in i or "--no-deps" in i for i in installs)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert final.index(f"USER {users[-1]}") > max(final.index(i) for i in installs)
    for folder in ("src", "content", "migrations"):
        assert f"COPY {folder} ./{folder}" in lines


def _healthcheck_command() -> list[str]:
    (line,) = [line for line in _dockerfile() if line.startswith("HEALTHCHECK ")]
    command: list[str] = json.loads(line[line.index("CMD ") + 4 :])
    return command


@pytest.fixture
def healthz_server() -> Iterator[int]:
    """A stand-in for the bot's /healthz on a free port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_image_healthcheck_asks_healthz_on_the_listen_port_without_curl(
    healthz_server: int,
) -> None:
    command = _healthcheck_command()
    assert command[0] == "python"  # the image has no curl; Python it has

    def check(listen: str) -> int:
        env = {**os.environ, "MILIABOT_LISTEN": listen}
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    assert check(f"0.0.0.0:{healthz_server}") == 0
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert check(f"0.0.0.0:{closed}") != 0


def _locked() -> dict[str, str]:
    """Name -> version pinned in requirements.lock, and each pin carries a hash."""
    text = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.MULTILINE))
    blocks = re.split(r"^(?=[A-Za-z0-9])", text, flags=re.MULTILINE)
    for block in blocks:
        if "==" in block.split("\n")[0]:
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_the_lock_file_pins_every_dependency_of_pyproject_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for line in project["dependencies"]:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in locked, f"{name} is in pyproject.toml but not in requirements.lock"
        assert wanted.specifier.contains(locked[name]), (
            f"requirements.lock pins {name}=={locked[name]}, outside {wanted.specifier}: "
            "run `make lock`"
        )
        for extra in wanted.extras:  # python-telegram-bot[job-queue] needs APScheduler
            assert extra != "job-queue" or "apscheduler" in locked
    assert "pytest" not in locked, "only runtime dependencies go into the image"


def test_env_example_documents_every_setting_and_loads_as_it_is(tmp_path: Path) -> None:
    example = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#? ?(MILIABOT_[A-Z_]+)=", example, re.MULTILINE))
    settings = {f"MILIABOT_{name.upper()}" for name in Settings.model_fields}
    assert settings <= names, f"missing from .env.example: {sorted(settings - names)}"
    # Copied to .env with only the token filled in, it gives the defaults.
    (tmp_path / ".env").write_text(example.replace("MILIABOT_TOKEN=", "MILIABOT_TOKEN=1:x", 1))
    script = (
        "from miliabot_tg.config import Settings; s = Settings(); "
        "print(s.token_value(), s.database_url, s.content_dir.name, s.global_rate)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["1:x", "sqlite:///data/miliabot.sqlite3", "content", "30.0"]


def test_readme_names_every_compose_service_and_the_env_example() -> None:
    readme = (ROOT / "README.md").read_text()
    for service in _compose()["services"]:
        assert f"`{service}`" in readme
    assert "`.env.example`" in readme
    assert "requirements.lock" in readme


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
    helped = _from_wheel(installed_wheel, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "migrate" in helped.stdout and "run" in helped.stdout
    migrated = _from_wheel(installed_wheel, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "miliabot.sqlite3").is_file()
    run = _from_wheel(installed_wheel, "run", cwd=tmp_path)
    assert run.returncode == 2
    assert "MILIABOT_TOKEN is not set" in run.stderr
