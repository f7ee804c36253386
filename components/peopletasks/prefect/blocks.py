"""Prefect Blocks: where the People Task service is, and how to send mail."""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from peopletasks.backends.service import PeopleTaskClient
from peopletasks.mail.send import SmtpConfig


class PeopleTaskService(Block):
    """The People Task service the components create tasks in.

    Example:
        ```python
        from peopletasks.prefect.blocks import PeopleTaskService

        PeopleTaskService(url="https://tasks.example.com", token="pt_...").save("tasks")
        ```
    """

    _block_type_name = "People Task Service"
    _block_type_slug = "people-task-service"
    _description = "Connection to a peopletasks (Appmixer-compatible People Task) service."

    url: str = Field(..., description="Base URL of the service, e.g. https://tasks.example.com")
    token: SecretStr = Field(..., description="API token (`peopletasks token create`).")

    def get_client(self) -> PeopleTaskClient:
        return PeopleTaskClient(self.url, self.token.get_secret_value())


class PeopleTaskMail(Block):
    """How approval mail is sent (SMTP). prefect-email's `EmailServerCredentials` is
    accepted wherever this block is."""

    _block_type_name = "People Task Mail"
    _block_type_slug = "people-task-mail"
    _description = "SMTP server and sender for approval e-mails."

    host: str = Field("localhost", description="SMTP server.")
    port: int | None = Field(None, description="Port; default by TLS: 25, 587 or 465.")
    username: str | None = None
    password: SecretStr | None = None
    tls: Literal["none", "starttls", "tls"] = Field("starttls", description="none | starttls | tls")
    sender: str = Field(..., description="From address, e.g. approvals@example.com")
    reply_to: str | None = None

    def smtp_config(self) -> SmtpConfig:
        return SmtpConfig(
            host=self.host,
            port=self.port,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            tls=self.tls,
            sender=self.sender,
            reply_to=self.reply_to,
        )


def smtp_config_from(source: Any, *, sender: str | None = None) -> SmtpConfig:
    """SMTP settings from our block, prefect-email's `EmailServerCredentials`, a
    `SmtpConfig`, or (None) the `PEOPLETASKS_SMTP_*` environment."""
    if source is None:
        config = SmtpConfig.from_env()
    elif isinstance(source, SmtpConfig):
        config = source
    elif isinstance(source, PeopleTaskMail):
        config = source.smtp_config()
    elif type(source).__name__ == "EmailServerCredentials":
        smtp_type = str(getattr(source.smtp_type, "name", source.smtp_type)).upper()
        tls = {"SSL": "tls", "STARTTLS": "starttls"}.get(smtp_type, "none")
        password = source.password.get_secret_value() if source.password else None
        config = SmtpConfig(
            host=str(getattr(source.smtp_server, "value", source.smtp_server)),
            port=source.smtp_port,
            username=source.username or None,
            password=password or None,
            tls=tls,  # type: ignore[arg-type]
            sender=sender or source.username or SmtpConfig().sender,
            validate_certs=bool(getattr(source, "verify", True)),
        )
    else:
        raise TypeError(f"cannot send mail with {type(source).__name__}")
    if sender is not None and sender != config.sender:
        from dataclasses import replace

        config = replace(config, sender=sender)
    return config
