"""Settings, the command line's exit codes and messages, and that the token never leaks."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miliabot_tg.config import ConfigError, load_settings
from miliabot_tg.logs import RedactingFormatter

SECRET = "987654:AAH-secret-token-value"


def _miliabot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILIABOT_")}
    return subprocess.run(
        [sys.executable, "-m", "miliabot_tg", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MILIABOT_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.api_url == "https://api.telegram.org"
    assert settings.database_url == "sqlite:///data/miliabot.sqlite3"
    assert settings.admin_ids == frozenset()
    assert settings.default_tz == "UTC"
    assert (settings.content_dir / "what-milia-are.md").is_file()


def test_settings_are_read_from_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MILIABOT_ADMIN_IDS=5, 6\nMILIABOT_DEFAULT_TZ=Asia/Kolkata\n")
    monkeypatch.setenv("MILIABOT_API_URL", "http://127.0.0.1:8081/")
    settings = load_settings()
    assert settings.admin_ids == frozenset({5, 6})
    assert settings.default_tz == "Asia/Kolkata"
    assert settings.api_url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MILIABOT_ADMIN_IDS", "12,abc", "MILIABOT_ADMIN_IDS must be comma-separated numeric"),
        ("MILIABOT_DEFAULT_TZ", "Mars/Olympus", "MILIABOT_DEFAULT_TZ must be an IANA timezone"),
        ("MILIABOT_API_URL", "ftp://x", "MILIABOT_API_URL must start with http"),
        ("MILIABOT_CONTENT_DIR", "/no/such/folder", "MILIABOT_CONTENT_DIR folder /no/such"),
    ],
)
def test_malformed_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_run_without_a_token_exits_2_and_says_how_to_get_one(tmp_path: Path) -> None:
    result = _miliabot("run", env={}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MILIABOT_TOKEN" in lines[0]
    assert "@BotFather" in lines[0]
    assert "make console" in lines[0]


def test_malformed_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _miliabot("run", env={"MILIABOT_DEFAULT_TZ": "Nowhere/Land"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "miliabot: MILIABOT_DEFAULT_TZ must be an IANA timezone name such as Europe/Berlin."
    ]


def test_run_refuses_invalid_content_and_says_why(tmp_path: Path) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "x.md").write_text("---\nid: x\n---\nhello\n")
    result = _miliabot(
        "run", env={"MILIABOT_TOKEN": SECRET, "MILIABOT_CONTENT_DIR": str(content)}, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "guide content has problems" in result.stderr
    assert "x.md: missing field(s)" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_run_refuses_an_out_of_date_postgres_schema(tmp_path: Path, postgres_url: str) -> None:
    env = {"MILIABOT_TOKEN": SECRET, "MILIABOT_DATABASE_URL": postgres_url}
    result = _miliabot("run", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "run `miliabot migrate` first" in result.stderr
    migrated = _miliabot("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout


def test_content_validate_prints_one_line_per_problem(tmp_path: Path) -> None:
    ok = _miliabot("content", "validate", env={}, cwd=tmp_path)
    assert ok.returncode == 0
    assert "OK" in ok.stdout
    (tmp_path / "a.md").write_text("---\nid: a\ntitle: A\n---\nshort\n")
    bad = _miliabot("content", "validate", str(tmp_path), env={}, cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert lines[0].endswith("a.md: missing field(s): order, references, related, reviewed, topic")
    assert any("has no tips for 'sunscreen'" in line for line in lines)


def test_redacting_formatter_hides_the_token_in_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", [SECRET])
    try:
        raise RuntimeError(f"The token `{SECRET}` was rejected by the server.")
    except RuntimeError:
        record = logging.LogRecord(
            "httpx",
            logging.INFO,
            __file__,
            1,
            "POST https://x/bot%s/getMe",
            (SECRET,),
            sys.exc_info(),
        )
    text = formatter.format(record)
    assert SECRET not in text
    assert "https://x/bot<token>/getMe" in text
    assert "The token `<token>` was rejected" in text


def test_an_unreachable_database_is_one_clear_line_without_the_password(tmp_path: Path) -> None:
    env = {
        "MILIABOT_TOKEN": SECRET,
        "MILIABOT_DATABASE_URL": "postgresql://postgres:hunter2@127.0.0.1:1/nowhere",
    }
    result = _miliabot("run", env=env, cwd=tmp_path)
    assert result.returncode == 69
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("miliabot: cannot use the database in MILIABOT_DATABASE_URL:")
    assert "Connection refused" in lines[0] or "connection failed" in lines[0]
    assert "hunter2" not in result.stderr and SECRET not in result.stderr
