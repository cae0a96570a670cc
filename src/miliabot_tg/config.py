"""One Settings class, read from the environment and an optional `.env` file."""

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from miliabot_tg.paths import bundled_dir

DEFAULT_API_URL = "https://api.telegram.org"


def _default_database_url() -> str:
    return f"sqlite:///{Path('data') / 'miliabot.sqlite3'}"


class Settings(BaseSettings):
    """Everything the bot can be told from outside."""

    model_config = SettingsConfigDict(
        env_prefix="MILIABOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    token: SecretStr | None = None
    api_url: str = DEFAULT_API_URL
    database_url: str = Field(default_factory=_default_database_url)
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    content_dir: Path = Field(default_factory=lambda: bundled_dir("content"))
    default_tz: str = "UTC"
    # Telegram's limits: about 30 messages a second in all and one a second per chat.
    global_rate: float = Field(default=30.0, gt=0)
    chat_rate: float = Field(default=1.0, gt=0)
    # Paid broadcasts (Telegram's allow_paid_broadcast, charged in Stars): off unless asked
    # for; when on, broadcasts go out at this rate of their own, outside the 30 a second.
    paid_broadcasts: bool = False
    paid_broadcast_rate: float = Field(default=1000.0, gt=0, le=1000)
    # Reminders missed for longer than this (the bot was down) are recorded, not sent.
    grace_minutes: float = Field(default=120.0, ge=0)
    # A dispatcher's claim on a reminder it is sending expires after this long.
    claim_lease_seconds: float = Field(default=60.0, gt=0)
    # Finished reminder occurrences are kept this long (a year of progress history), then pruned.
    history_days: int = Field(default=400, ge=1)
    # Open-Meteo's forecast API, for the UV index on sunscreen reminders and outdoor mode.
    uv_api_url: str = "https://api.open-meteo.com"
    uv_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    # One user's updates beyond this many in this many seconds are dropped (one "slow down").
    flood_limit: int = Field(default=20, ge=1)
    flood_window_seconds: float = Field(default=10.0, gt=0)
    # host:port of the HTTP server (health, readiness, metrics, the webhook); "off": none.
    listen: str = "0.0.0.0:8080"
    # The public https URL Telegram posts updates to; set, it replaces polling (web.py).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # How many connections Telegram may open to the webhook at once (1-100).
    webhook_max_connections: int = Field(default=40, ge=1, le=100)
    # "text" for people reading a terminal, "json" (one object a line) for a log collector.
    log_format: Literal["text", "json"] = "text"

    @field_validator("api_url", "uv_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(part) for part in parts if part)
            except ValueError:
                raise ValueError("must be comma-separated numeric Telegram user ids") from None
        return value

    @field_validator("default_tz")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA timezone name such as Europe/Berlin") from None
        return value

    @field_validator("content_dir")
    @classmethod
    def _check_content_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"folder {value} does not exist")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        value = value.strip()
        if value.lower() not in ("", "off"):
            parse_listen(value)
        return value

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError(
                    "must be a public https:// URL, such as https://bot.example.com/tg"
                )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        # Telegram's rule for secret_token: 1-256 characters A-Z, a-z, 0-9, _ and -.
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value().strip()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _check_webhook(self) -> "Settings":
        if self.webhook_url is not None:
            if self.webhook_secret is None:
                raise ValueError(
                    "MILIABOT_WEBHOOK_SECRET is required with MILIABOT_WEBHOOK_URL: Telegram "
                    "sends it with every update, so no one else can post to the webhook "
                    "(e.g. `openssl rand -hex 32`)"
                )
            if self.listen_address() is None:
                raise ValueError(
                    "MILIABOT_LISTEN must be a host:port with MILIABOT_WEBHOOK_URL: the webhook "
                    "is served there"
                )
        return self

    def listen_address(self) -> tuple[str, int] | None:
        """Where the HTTP server listens, or None when MILIABOT_LISTEN is empty or off."""
        if self.listen.lower() in ("", "off"):
            return None
        return parse_listen(self.listen)

    def webhook_path(self) -> str:
        """The path the webhook is served at: the public URL's path ("/" if it has none)."""
        return urlsplit(self.webhook_url or "").path or "/"

    def token_value(self) -> str:
        """Return the token, or raise ConfigError saying how to get one."""
        if self.token is None or not self.token.get_secret_value().strip():
            raise ConfigError(
                "MILIABOT_TOKEN is not set: get a bot token from @BotFather in Telegram "
                "and run `MILIABOT_TOKEN=<token> make run` (`make console` needs no token)."
            )
        return self.token.get_secret_value().strip()


def parse_listen(value: str) -> tuple[str, int]:
    """Read "host:port" ("[::1]:8080" for IPv6; port 0: any free one)."""
    host, colon, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port, such as 0.0.0.0:8080, or off")
    return host, int(port)


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what to do."""


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if not first["loc"]:  # a rule over several settings names them itself
            raise ConfigError(f"{message}.") from None
        name = "MILIABOT_" + str(first["loc"][0]).upper()
        raise ConfigError(f"{name} {message}.") from None
