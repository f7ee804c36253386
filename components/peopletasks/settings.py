"""All configuration, read once from `PEOPLETASKS_*` environment variables.

| variable | meaning |
|---|---|
| PEOPLETASKS_DATABASE_URL | SQLAlchemy URL of the service store (SQLite file by default) |
| PEOPLETASKS_PUBLIC_URL | base URL people's browsers reach the service at |
| PEOPLETASKS_SECRET_KEY | signing key(s); comma-separated, newest first |
| PEOPLETASKS_ENVIRONMENT | `development` (default) or anything else (e.g. `production`) |
| PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS | allow webhook targets on private addresses |
| PEOPLETASKS_AUTH_CACHE_SECONDS | how long a verified API token or task secret is remembered |
| PEOPLETASKS_WEBHOOK_* | delivery timeout, retry base / max delay / horizon, concurrency |
| PEOPLETASKS_BACKGROUND_WORKERS | run the dispatcher and deadline scheduler (default true) |
| PEOPLETASKS_SMTP_HOST | the service sends mail (with the other PEOPLETASKS_SMTP_*) |
| PEOPLETASKS_NOTIFY_DEFAULT | `notify` of tasks that do not say (`email`; default none) |
| PEOPLETASKS_MAIL_* | the mail outbox: connections, retry base / max delay / horizon, poll |
| PEOPLETASKS_PEOPLELOGIC_* | `PeoplelogicBackend.from_env()`: URL, TOKEN, ENTITY, APPROVED ... |
| PEOPLETASKS_PLANNR_* | `PlannrBackend.from_env()`: URL, TOKEN, ACCOUNT_UUID, APPROVED ... |
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from peopletasks.errors import ConfigurationError as ConfigurationError

DEFAULT_DATABASE_PATH = Path(".peopletasks") / "peopletasks.db"
#: Used when no key is configured in development. Refused anywhere else.
DEVELOPMENT_SECRET_KEY = "development-only-insecure-key-change-me"
_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "secret", DEVELOPMENT_SECRET_KEY}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEOPLETASKS_", extra="ignore")

    environment: str = Field("development", description="`development` or e.g. `production`.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means the default SQLite file."
    )
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL browsers reach us at.")
    secret_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Signing keys, newest first."
    )
    allow_private_webhooks: bool = False
    auth_cache_seconds: float = Field(10.0, ge=0)
    link_max_age_seconds: float = Field(
        7 * 86400.0, gt=0, description="Action links expire at the deadline or after this."
    )
    wait_recheck_seconds: float = Field(
        5.0, gt=0, description="A long poll re-reads the store this often (besides NOTIFY)."
    )
    templates_dir: str = Field("", description="A folder whose templates override ours.")
    background_workers: bool = Field(
        True, description="Run the webhook dispatcher and the deadline scheduler in-process."
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=120)
    webhook_retry_base_seconds: float = Field(2.0, gt=0, description="First retry delay.")
    webhook_retry_max_delay_seconds: float = Field(3600.0, gt=0)
    webhook_retry_horizon_seconds: float = Field(3 * 86400.0, gt=0, description="Give up after.")
    webhook_concurrency: int = Field(64, ge=1, le=1000)
    webhook_poll_seconds: float = Field(
        1.0, gt=0, description="How often an idle dispatcher looks for retries and others' work."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="A request body longer than this is refused (413)."
    )
    # The service's own mail (issue 16). The SMTP connection itself is
    # `mail.SmtpConfig.from_env()` (PEOPLETASKS_SMTP_*), read once at start when this is set.
    smtp_host: str = Field(
        "", description="The SMTP server the service sends its mail through; unset: no mail."
    )
    notify_default: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="`notify` of a task that does not say (`email`, or empty: none).",
    )
    mail_connections: int = Field(
        16,
        ge=1,
        le=64,
        description="SMTP connections per process (fewer for providers that cap them).",
    )
    mail_retry_base_seconds: float = Field(30.0, gt=0, description="First retry delay.")
    mail_retry_max_delay_seconds: float = Field(1800.0, gt=0)
    mail_retry_horizon_seconds: float = Field(86400.0, gt=0, description="Give up after.")
    mail_poll_seconds: float = Field(
        1.0, gt=0, description="How often an idle mail dispatcher looks for retries."
    )

    @field_validator("secret_key", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("notify_default", mode="before")
    @classmethod
    def _split_channels(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("notify_default")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"email"})
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}: the one channel is email")
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{DEFAULT_DATABASE_PATH}"
        return self

    @property
    def is_development(self) -> bool:
        return self.environment.lower() in {"development", "dev", "test"}

    @property
    def mails(self) -> bool:
        """Whether the service sends mail (PEOPLETASKS_SMTP_HOST is set)."""
        return bool(self.smtp_host.strip())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_keys(self) -> list[bytes]:
        """The keys to sign with (first) and verify against (all).

        Raises `ConfigurationError` outside development when no real key is set.
        """
        keys = [k for k in self.secret_key if k]
        if not keys or any(k.lower() in _PLACEHOLDER_KEYS or len(k) < 16 for k in keys):
            if not self.is_development:
                raise ConfigurationError(
                    "PEOPLETASKS_SECRET_KEY must be set to one or more random keys of at least "
                    "16 characters (comma-separated, newest first) outside development; "
                    'generate one with: python -c "import secrets; print(secrets.token_hex(32))"'
                )
            if not keys:
                keys = [DEVELOPMENT_SECRET_KEY]
        return [k.encode() for k in keys]


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PeoplelogicSettings(BaseSettings):
    """`PEOPLETASKS_PEOPLELOGIC_*`: a Peoplelogic backend from the environment."""

    model_config = SettingsConfigDict(env_prefix="PEOPLETASKS_PEOPLELOGIC_", extra="ignore")

    url: str = "https://api.peoplelogic.dev"
    token: SecretStr = SecretStr("")
    entity: str = ""
    approved: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["done"])
    rejected: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["cancelled"])
    assignee_type: str = "user"
    overdue_ends_wait: bool = False

    _split = field_validator("approved", "rejected", mode="before")(_comma_list)


class PlannrSettings(BaseSettings):
    """`PEOPLETASKS_PLANNR_*`: a Plannr backend from the environment."""

    model_config = SettingsConfigDict(env_prefix="PEOPLETASKS_PLANNR_", extra="ignore")

    url: str = "https://api.plannrcrm.com"
    token: SecretStr = SecretStr("")
    account_uuid: str = ""
    approved: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rejected: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["Rejected"])
    taskable_type: Literal["client", "case", "plan"] | None = None
    taskable_uuid: str | None = None
    request_key_field: str | None = None
    overdue_ends_wait: bool = False

    _split = field_validator("approved", "rejected", mode="before")(_comma_list)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
