"""All configuration: every `PEOPLETASKS_*` variable is read here and nowhere else.

The service's settings (`Settings`, read once per process):

| variable | meaning |
|---|---|
| PEOPLETASKS_DATABASE_URL | SQLAlchemy URL of the service store (SQLite file by default) |
| PEOPLETASKS_PUBLIC_URL | base URL people's browsers reach the service at |
| PEOPLETASKS_DASHBOARD_URL | the people's dashboard (default {PUBLIC_URL}/people-task/dashboard) |
| PEOPLETASKS_SECRET_KEY | signing key(s); comma-separated, newest first |
| PEOPLETASKS_ENVIRONMENT | `development` (default) or anything else (e.g. `production`) |
| PEOPLETASKS_ALLOW_PRIVATE_WEBHOOKS | allow webhook targets on private addresses |
| PEOPLETASKS_PERSON_SECRETS | Appmixer's person-wide task secrets (off: a secret is one task's) |
| PEOPLETASKS_MAX_BODY_BYTES | the largest request body (1 MiB) |
| PEOPLETASKS_PREFECT_API_URL | Prefect API(s) the service may resume flow runs on, private or not |
| PEOPLETASKS_AUTH_CACHE_SECONDS | how long a verified API token or task secret is remembered |
| PEOPLETASKS_TEMPLATES_DIR | a folder whose templates override ours (pages and mail) |
| PEOPLETASKS_WEBHOOK_* | delivery timeout, retry base / max delay / horizon, concurrency |
| PEOPLETASKS_BACKGROUND_WORKERS | run the dispatcher and deadline scheduler (default true) |
| PEOPLETASKS_SMTP_HOST | the service sends mail (with the other PEOPLETASKS_SMTP_*) |
| PEOPLETASKS_NOTIFY_DEFAULT | `notify` of tasks that do not say (`email`; default none) |
| PEOPLETASKS_MAIL_* | the mail outbox: connections, retry base / max delay / horizon, poll |

The components' configuration (the Prefect side, the mailer), read when used. Each is
declared once, as a model: its environment form is `from_environment(model, prefix)`
and, for the Prefect side, its Block (`peopletasks.prefect.blocks`) subclasses it.

| variables | model |
|---|---|
| PEOPLETASKS_API_URL / _API_TOKEN | `ServiceConnection` (block: `PeopleTaskService`) |
| PEOPLETASKS_SERVICE_BLOCK / _MAIL_BLOCK | `ComponentSettings`: saved blocks to use by default |
| PEOPLETASKS_SMTP_* | `SmtpConfig` (block: `PeopleTaskMail`) |
| PEOPLETASKS_BRAND_* | `Branding` |
| PEOPLETASKS_PEOPLELOGIC_* | `PeoplelogicConfig` (`PeoplelogicBackend`, block `PeoplelogicTasks`) |
| PEOPLETASKS_PLANNR_* | `PlannrConfig` (`PlannrBackend`, block `PlannrTasks`) |
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from peopletasks.errors import ConfigurationError as ConfigurationError

DEFAULT_DATABASE_PATH = Path(".peopletasks") / "peopletasks.db"
#: Where the service serves the people's dashboard.
DASHBOARD_PATH = "/people-task/dashboard"
#: Used when no key is configured in development. Refused anywhere else.
DEVELOPMENT_SECRET_KEY = "development-only-insecure-key-change-me"
_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "secret", DEVELOPMENT_SECRET_KEY}


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


#: A list given as a list or as one comma-separated string (`a, b`).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEOPLETASKS_", extra="ignore")

    environment: str = Field("development", description="`development` or e.g. `production`.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means the default SQLite file."
    )
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL browsers reach us at.")
    dashboard_url: str = Field(
        "",
        description="Where people see their tasks and decide (answered by GET "
        "/people-task/dashboard-url; Appmixer's mailed links open it). Empty: "
        "{public_url}/people-task/dashboard.",
    )
    secret_key: CommaList = Field(default_factory=list, description="Signing keys, newest first.")
    allow_private_webhooks: bool = False
    person_secrets: bool = Field(
        False,
        description="Appmixer's person-wide secrets: one approver secret decides all of that "
        "person's tasks (and whoever creates a task naming them receives it).",
    )
    prefect_api_url: CommaList = Field(
        default_factory=list,
        description="Prefect APIs (e.g. http://prefect:4200/api) whose flow runs the service "
        "may resume although they are on private addresses; nothing else is opened.",
    )
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
    notify_default: CommaList = Field(
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

    @field_validator("prefect_api_url")
    @classmethod
    def _api_urls(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @field_validator("dashboard_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.lower().startswith(("https://", "http://")):
            raise ValueError(
                "must be an absolute http(s) URL, like https://tasks.example.com/people-task/dashboard"
            )
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{DEFAULT_DATABASE_PATH}"
        if not self.dashboard_url:
            self.dashboard_url = f"{self.public_url}{DASHBOARD_PATH}"
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


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()


def templates_dir() -> str | None:
    """`PEOPLETASKS_TEMPLATES_DIR` as it is now (the mailer reads it when it renders)."""
    return Settings().templates_dir or None


# --- the components' configuration ---------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


class EnvironmentModel(BaseModel):
    """A configuration model with an environment form: `from_environment(Model, prefix)`.

    A field `foo` is read from `{prefix}FOO` unless `env_names` says otherwise.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    env_names: ClassVar[Mapping[str, str]] = {}


def environment_names(model: type[BaseModel], prefix: str) -> dict[str, str]:
    """Field name -> the variable it is read from."""
    names: Mapping[str, str] = getattr(model, "env_names", {})
    return {field: prefix + names.get(field, field.upper()) for field in model.model_fields}


def from_environment(model: type[M], prefix: str, environ: Mapping[str, str] | None = None) -> M:
    """`model` from the `{prefix}*` environment variables (an empty one counts as unset).

    Raises `ValueError` naming each variable that is missing or wrong.
    """
    env = os.environ if environ is None else environ
    names = environment_names(model, prefix)
    values = {field: env[name] for field, name in names.items() if env.get(name, "").strip()}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ValueError(_named_errors(exc, names, prefix)) from None


def _named_errors(exc: ValidationError, names: Mapping[str, str], prefix: str) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in names:
            problems.append(f"{names[field]} ({field}): {message}")
        else:
            problems.append(f"{prefix}*: {message}")
    return "; ".join(problems)


class ServiceConnection(EnvironmentModel):
    """Where the Prefect components reach our People Task service."""

    url: str = Field(..., description="Base URL of the service, e.g. https://tasks.example.com.")
    token: SecretStr = Field(..., description="API token (`peopletasks token create`).")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value.rstrip("/")


class ComponentSettings(EnvironmentModel):
    """Saved Prefect blocks the components use when a call names none (worker configuration
    without secrets in it: the blocks hold them)."""

    service_block: str | None = Field(
        None, description="Name of a saved PeopleTaskService block (its name or slug/name)."
    )
    mail_block: str | None = Field(
        None, description="Name of a saved PeopleTaskMail block (its name or slug/name)."
    )


def component_settings() -> ComponentSettings:
    """`PEOPLETASKS_SERVICE_BLOCK` and `PEOPLETASKS_MAIL_BLOCK` as they are now."""
    return from_environment(ComponentSettings, "PEOPLETASKS_")


def service_connection() -> ServiceConnection:
    """`PEOPLETASKS_API_URL` / `PEOPLETASKS_API_TOKEN`; ValueError naming what is missing."""
    return from_environment(ServiceConnection, "PEOPLETASKS_API_")


# --- mail -----------------------------------------------------------------------------------

TlsMode = Literal["none", "starttls", "tls"]
TLS_MODES: tuple[str, ...] = get_args(TlsMode)
DEFAULT_PORTS: Mapping[str, int] = {"none": 25, "starttls": 587, "tls": 465}
DEFAULT_SENDER = "peopletasks@localhost"
_TLS_SYNONYMS = {"ssl": "tls", "implicit": "tls", "off": "none", "false": "none"}


def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpConfig(EnvironmentModel):
    """Where and how approval mail is sent (`PEOPLETASKS_SMTP_*`; the `PeopleTaskMail` block).

    `tls` unset: `none` for a loopback host, else `starttls`. `port` unset: the usual port
    of `tls`: 25 (`none`), 587 (`starttls`), 465 (`tls`, i.e. implicit TLS).
    """

    model_config = ConfigDict(frozen=True)
    env_names: ClassVar[Mapping[str, str]] = {"sender": "FROM"}

    host: str = Field("localhost", description="SMTP server.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port; unset: by TLS mode (25, 587 or 465)."
    )
    username: str | None = Field(None, description="Login name (no login when unset).")
    password: SecretStr | None = Field(None, description="Login password.")
    tls: TlsMode = Field(
        "starttls", description="none | starttls | tls (unset: none for a loopback host)."
    )
    sender: str = Field(
        DEFAULT_SENDER,
        description="From address of messages that have none, and the envelope sender.",
    )
    reply_to: str | None = Field(None, description="Reply-To of messages that have none.")
    timeout: float = Field(30.0, gt=0, description="Seconds for connecting and each answer.")
    validate_certs: bool = Field(True, description="Verify the server's TLS certificate.")
    cafile: str | None = Field(
        None, description="A PEM file of CA certificates to trust (unset: the system's)."
    )
    local_hostname: str | None = Field(
        None, description="The name given in EHLO (unset: this machine's FQDN)."
    )

    @model_validator(mode="before")
    @classmethod
    def _tls_by_host(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("tls"):
            host = str(data.get("host") or "localhost").strip()
            data = {**data, "tls": "none" if is_loopback(host) else "starttls"}
        return data

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_synonyms(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _TLS_SYNONYMS.get(value, value)
        return value

    @model_validator(mode="after")
    def _port_by_tls(self) -> SmtpConfig:
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[self.tls])
        return self

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpConfig:
        """From `PEOPLETASKS_SMTP_HOST / _PORT / _USERNAME / _PASSWORD / _TLS / _FROM /
        _REPLY_TO / _TIMEOUT / _VALIDATE_CERTS / _CAFILE / _LOCAL_HOSTNAME`. Raises
        ValueError naming the variable that is wrong."""
        return from_environment(cls, "PEOPLETASKS_SMTP_", environ)


_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class Branding(EnvironmentModel):
    """What the mails show of the sender's brand (`PEOPLETASKS_BRAND_*`; all optional)."""

    model_config = ConfigDict(frozen=True)
    env_names: ClassVar[Mapping[str, str]] = {
        "product_name": "NAME",
        "accent_color": "COLOR",
    }

    product_name: str = Field("peopletasks", description="Shown in the header and footer.")
    accent_color: str = Field(
        "#2457d6", description="A #rgb / #rrggbb colour: header and the Approve button."
    )
    logo_url: str | None = Field(
        None, description="An absolute http(s) URL of a logo (shown ~32 px high)."
    )
    footer: str | None = Field(None, description="One line at the bottom of every mail.")

    @field_validator("accent_color")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX_COLOR.match(value):
            raise ValueError(f"accent_color must be a hex colour such as #2457d6, not {value!r}")
        return value

    @field_validator("logo_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("https://", "http://")):
            raise ValueError(f"logo_url must be an http(s) URL, not {value!r}")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Branding:
        """From `PEOPLETASKS_BRAND_NAME / _COLOR / _LOGO_URL / _FOOTER` (unset: defaults)."""
        return from_environment(cls, "PEOPLETASKS_BRAND_", environ)

    @property
    def accent_text_color(self) -> str:
        """White or near-black: whichever reads better on the accent colour."""
        digits = self.accent_color.lstrip("#")
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)

        def channel(hex_pair: str) -> float:
            c = int(hex_pair, 16) / 255
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(digits[i : i + 2]) for i in (0, 2, 4))
        luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
        # Contrast with white vs with #111111 (luminance ~0.0056).
        on_white = 1.05 / (luminance + 0.05)
        on_black = (luminance + 0.05) / 0.0556
        return "#ffffff" if on_white >= on_black else "#111111"


# --- other task systems ---------------------------------------------------------------------


def _status_set(value: Any) -> Any:
    """A status set for case-insensitive matching ("Done, done " -> {"done"})."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return frozenset(str(v).strip().casefold() for v in value if v and str(v).strip())


#: Task statuses, matched case-insensitively (a list, or one comma-separated string).
StatusSet = Annotated[frozenset[str], NoDecode, BeforeValidator(_status_set)]
PlannrPriority = Literal["low", "medium", "high", "highest"]


class PeoplelogicConfig(EnvironmentModel):
    """Peoplelogic as the task system of approvals: the API, the entity the tasks go on, and
    the task statuses that mean approved / rejected."""

    url: str = Field("https://api.peoplelogic.dev", description="Peoplelogic API base URL.")
    token: SecretStr = Field(..., description="Bearer JWT.")
    entity: str = Field(..., description="Entity (OKR, meeting, IDP ...) the tasks belong to.")
    approved: StatusSet = Field(
        frozenset({"done"}), description="status.current values meaning approved."
    )
    rejected: StatusSet = Field(
        frozenset({"cancelled"}), description="status.current values meaning rejected."
    )
    assignee_type: str = Field("user", description="entityType of the approver in assignees.")
    app: str | None = Field(None, description="`app` of the mapping that records our request.")
    order: int | None = Field(None, description="`order` of new tasks.")
    order_group: str | None = Field(None, description="`orderGroup` of new tasks.")
    overdue_ends_wait: bool = Field(
        False, description="An open task past its dueDate ends the wait as `due`."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for each call.")
    retries: int = Field(4, ge=0, description="Retries of a call that failed for now.")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("Peoplelogic needs a token (a Peoplelogic JWT)")
        return value

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        if not value:
            raise ValueError("Peoplelogic needs the entity the tasks belong to")
        return value

    @model_validator(mode="after")
    def _statuses(self) -> PeoplelogicConfig:
        if not self.approved:
            raise ValueError("approved: name at least one status.current value meaning approved")
        if self.approved & self.rejected:
            raise ValueError(f"approved and rejected share {sorted(self.approved & self.rejected)}")
        return self


class PlannrConfig(EnvironmentModel):
    """Plannr CRM as the task system of approvals: the API, the account, where tasks live and
    the task statuses that mean approved / rejected."""

    url: str = Field("https://api.plannrcrm.com", description="Plannr API base URL.")
    token: SecretStr = Field(..., description="OAuth or personal access token.")
    account_uuid: str = Field(..., description="Sent as X-PLANNR-ACCOUNT-UUID.")
    approved: StatusSet | None = Field(
        None, description="Status uuids / names meaning approved; unset: any completed type."
    )
    rejected: StatusSet = Field(
        frozenset({"rejected"}), description="Status uuids / names meaning rejected."
    )
    taskable_type: Literal["client", "case", "plan"] | None = Field(
        None, description="What the tasks are on: client, case or plan (with taskable_uuid)."
    )
    taskable_uuid: str | None = Field(None, description="The client, case or plan.")
    task_status_uuid: str | None = Field(None, description="Status of new tasks.")
    parent_task_uuid: str | None = Field(None, description="Parent of new tasks.")
    group_uuids: CommaList = Field(
        default_factory=list, description="Groups new tasks are assigned to."
    )
    priority: PlannrPriority | None = Field(
        None, description="Priority of new tasks: low, medium, high or highest."
    )
    request_key_field: str | None = Field(
        None, description="A task custom field (reference) to record our request key in."
    )
    overdue_ends_wait: bool = Field(
        False, description="An open task past its due_at ends the wait as `due`."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds for each call.")
    retries: int = Field(4, ge=0, description="Retries of a call that failed for now.")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("Plannr needs a token (OAuth or personal access token)")
        return value

    @field_validator("account_uuid")
    @classmethod
    def _account(cls, value: str) -> str:
        if not value:
            raise ValueError("Plannr needs account_uuid (sent as X-PLANNR-ACCOUNT-UUID)")
        return value

    @field_validator("approved")
    @classmethod
    def _approved(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> PlannrConfig:
        if (self.taskable_type is None) != (self.taskable_uuid is None):
            raise ValueError("taskable_type and taskable_uuid go together")
        if self.approved is not None and self.approved & self.rejected:
            raise ValueError(f"approved and rejected share {sorted(self.approved & self.rejected)}")
        return self
