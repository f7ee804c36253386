"""Prefect Blocks: where the task systems are (our service, Peoplelogic, Plannr), and how to
send mail.

Each block is its configuration model from `peopletasks.settings` (the one declaration of
those fields, which also gives the `PEOPLETASKS_*` environment form) made a Block:

| block | fields from | makes |
|---|---|---|
| `PeopleTaskService` | `ServiceConnection` | `PeopleTaskClient` |
| `PeoplelogicTasks` | `PeoplelogicConfig` | `PeoplelogicBackend` |
| `PlannrTasks` | `PlannrConfig` | `PlannrBackend` |
| `PeopleTaskMail` | `SmtpConfig` | `SmtpConfig` |
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import ConfigDict

from peopletasks.backends.base import Capabilities, TaskBackend
from peopletasks.backends.peoplelogic import PeoplelogicBackend
from peopletasks.backends.plannr import PlannrBackend
from peopletasks.backends.service import PeopleTaskClient
from peopletasks.settings import (
    PeoplelogicConfig,
    PlannrConfig,
    ServiceConnection,
    SmtpConfig,
)

#: Where the Prefect side is documented (shown by Prefect's UI beside each block type).
DOCUMENTATION_URL = "https://github.com/peopletasks/peopletasks#prefect"


class TaskSystemBlock:
    """What our task-system blocks share: they make a `TaskBackend` (`backend=` of the
    approval components), and what it can do is what that backend class can do."""

    #: The backend it makes; its `capabilities` are the block's.
    backend_class: ClassVar[type[TaskBackend]]

    @classmethod
    def capabilities(cls) -> Capabilities:
        return cls.backend_class.capabilities

    def get_backend(self) -> TaskBackend:
        made = self.backend_class.model_validate(self, from_attributes=True)  # type: ignore[attr-defined]
        assert isinstance(made, TaskBackend)
        return made


class PeopleTaskService(ServiceConnection, TaskSystemBlock, Block):
    """The People Task service the components create tasks in.

    Example:
        ```python
        from peopletasks import PeopleTaskService

        PeopleTaskService(url="https://tasks.example.com", token="pt_...").save("peopletasks")
        service = PeopleTaskService.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "People Task Service"
    _block_type_slug = "people-task-service"
    _documentation_url = DOCUMENTATION_URL  # type: ignore[assignment]
    _description = "Connection to a peopletasks (Appmixer-compatible People Task) service."

    backend_class: ClassVar[type[TaskBackend]] = PeopleTaskClient

    def get_client(self) -> PeopleTaskClient:
        return PeopleTaskClient(self.url, self.token.get_secret_value())

    def get_backend(self) -> PeopleTaskClient:
        return self.get_client()


class PeoplelogicTasks(PeoplelogicConfig, TaskSystemBlock, Block):
    """Peoplelogic as the task system of approvals (`backend=` of `request_approval`).

    Example:
        ```python
        from peopletasks import PeoplelogicTasks

        PeoplelogicTasks(token="eyJ...", entity="123e4567-...", approved=["done"],
                         rejected=["cancelled"]).save("peoplelogic")
        peoplelogic = PeoplelogicTasks.load("BLOCK_NAME")
        # request_approval(..., backend=peoplelogic, wait="poll"),
        # or backend="peoplelogic-tasks/peoplelogic"
        ```
    """

    _block_type_name = "Peoplelogic Tasks"
    _block_type_slug = "peoplelogic-tasks"
    _documentation_url = DOCUMENTATION_URL  # type: ignore[assignment]
    _description = "Peoplelogic API connection and the task statuses that mean approved / rejected."

    backend_class: ClassVar[type[TaskBackend]] = PeoplelogicBackend


class PlannrTasks(PlannrConfig, TaskSystemBlock, Block):
    """Plannr CRM as the task system of approvals (`backend=` of `request_approval`).

    Example:
        ```python
        from peopletasks import PlannrTasks

        PlannrTasks(token="...", account_uuid="...", rejected=["Rejected"]).save("plannr")
        plannr = PlannrTasks.load("BLOCK_NAME")
        # request_approval(..., backend=plannr, wait="poll"), or backend="plannr-tasks/plannr"
        ```
    """

    _block_type_name = "Plannr Tasks"
    _block_type_slug = "plannr-tasks"
    _documentation_url = DOCUMENTATION_URL  # type: ignore[assignment]
    _description = "Plannr API connection and the task statuses that mean approved / rejected."

    backend_class: ClassVar[type[TaskBackend]] = PlannrBackend


class PeopleTaskMail(SmtpConfig, Block):
    """How approval mail is sent (SMTP). prefect-email's `EmailServerCredentials` is
    accepted wherever this block is.

    Example:
        ```python
        from peopletasks import PeopleTaskMail

        PeopleTaskMail(host="smtp.example.com", username="approvals", password="...",
                       sender="approvals@example.com").save("peopletasks")
        mail = PeopleTaskMail.load("BLOCK_NAME")
        ```
    """

    model_config = ConfigDict(frozen=False)
    _block_type_name = "People Task Mail"
    _block_type_slug = "people-task-mail"
    _description = "SMTP server and sender for approval e-mails."
    _documentation_url = DOCUMENTATION_URL  # type: ignore[assignment]

    def smtp_config(self) -> SmtpConfig:
        return SmtpConfig(**{name: getattr(self, name) for name in SmtpConfig.model_fields})


def smtp_config_from(source: Any, *, sender: str | None = None) -> SmtpConfig:
    """SMTP settings from our block, prefect-email's `EmailServerCredentials`, a
    `SmtpConfig`, or (None) the `PEOPLETASKS_SMTP_*` environment."""
    if source is None:
        config = SmtpConfig.from_env()
    elif isinstance(source, PeopleTaskMail):
        config = source.smtp_config()
    elif isinstance(source, SmtpConfig):
        config = source
    elif type(source).__name__ == "EmailServerCredentials":
        smtp_type = str(getattr(source.smtp_type, "name", source.smtp_type)).upper()
        tls = {"SSL": "tls", "STARTTLS": "starttls"}.get(smtp_type, "none")
        password = source.password.get_secret_value() if source.password else None
        config = SmtpConfig(
            host=str(getattr(source.smtp_server, "value", source.smtp_server)),
            port=source.smtp_port,
            username=source.username or None,
            password=password or None,
            tls=tls,
            sender=sender or source.username or SmtpConfig().sender,
            validate_certs=bool(getattr(source, "verify", True)),
        )
    else:
        raise TypeError(f"cannot send mail with {type(source).__name__}")
    if sender is not None and sender != config.sender:
        config = config.model_copy(update={"sender": sender})
    return config
