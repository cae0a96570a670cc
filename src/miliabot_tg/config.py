"""One Settings class, read from the environment and an optional `.env` file."""

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
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
    # One user's updates beyond this many in this many seconds are dropped (one "slow down").
    flood_limit: int = Field(default=20, ge=1)
    flood_window_seconds: float = Field(default=10.0, gt=0)
    # "text" for people reading a terminal, "json" (one object a line) for a log collector.
    log_format: Literal["text", "json"] = "text"

    @field_validator("api_url")
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

    def token_value(self) -> str:
        """Return the token, or raise ConfigError saying how to get one."""
        if self.token is None or not self.token.get_secret_value().strip():
            raise ConfigError(
                "MILIABOT_TOKEN is not set: get a bot token from @BotFather in Telegram "
                "and run `MILIABOT_TOKEN=<token> make run` (`make console` needs no token)."
            )
        return self.token.get_secret_value().strip()


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what to do."""


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MILIABOT_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name} {message}.") from None
