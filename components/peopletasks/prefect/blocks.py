"""Prefect Blocks: where the task systems are (our service, Peoplelogic, Plannr), and how to
send mail."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from peopletasks.backends.peoplelogic import PeoplelogicBackend
from peopletasks.backends.plannr import PlannrBackend
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

    idempotent_create: ClassVar[bool] = True
    resumes_flow_runs: ClassVar[bool] = True
    system_name: ClassVar[str] = "the People Task service"

    def get_client(self) -> PeopleTaskClient:
        return PeopleTaskClient(self.url, self.token.get_secret_value())

    def get_backend(self) -> PeopleTaskClient:
        return self.get_client()


class PeoplelogicTasks(Block):
    """Peoplelogic as the task system of approvals (`backend=` of `request_approval`).

    Example:
        ```python
        from peopletasks import PeoplelogicTasks

        PeoplelogicTasks(token="eyJ...", entity="123e4567-...", approved=["done"],
                         rejected=["cancelled"]).save("peoplelogic")
        # request_approval(..., backend="peoplelogic-tasks/peoplelogic", wait="poll")
        ```
    """

    _block_type_name = "Peoplelogic Tasks"
    _block_type_slug = "peoplelogic-tasks"
    _description = "Peoplelogic API connection and the task statuses that mean approved / rejected."

    idempotent_create: ClassVar[bool] = False
    resumes_flow_runs: ClassVar[bool] = False
    system_name: ClassVar[str] = "Peoplelogic"

    url: str = Field("https://api.peoplelogic.dev", description="Peoplelogic API base URL.")
    token: SecretStr = Field(..., description="Bearer JWT.")
    entity: str = Field(..., description="Entity (OKR, meeting, IDP ...) the tasks belong to.")
    approved: list[str] = Field(["done"], description="status.current values meaning approved.")
    rejected: list[str] = Field(
        ["cancelled"], description="status.current values meaning rejected."
    )
    assignee_type: str = Field("user", description="entityType of the approver in assignees.")
    overdue_ends_wait: bool = Field(
        False, description="An open task past its dueDate ends the wait as `due`."
    )

    def get_backend(self) -> PeoplelogicBackend:
        return PeoplelogicBackend(
            url=self.url,
            token=self.token.get_secret_value(),
            entity=self.entity,
            approved=self.approved,
            rejected=self.rejected,
            assignee_type=self.assignee_type,
            overdue_ends_wait=self.overdue_ends_wait,
        )


class PlannrTasks(Block):
    """Plannr CRM as the task system of approvals (`backend=` of `request_approval`).

    Example:
        ```python
        from peopletasks import PlannrTasks

        PlannrTasks(token="...", account_uuid="...", rejected=["Rejected"]).save("plannr")
        # request_approval(..., backend="plannr-tasks/plannr", wait="poll")
        ```
    """

    _block_type_name = "Plannr Tasks"
    _block_type_slug = "plannr-tasks"
    _description = "Plannr API connection and the task statuses that mean approved / rejected."

    idempotent_create: ClassVar[bool] = False
    resumes_flow_runs: ClassVar[bool] = False
    system_name: ClassVar[str] = "Plannr"

    url: str = Field("https://api.plannrcrm.com", description="Plannr API base URL.")
    token: SecretStr = Field(..., description="OAuth or personal access token.")
    account_uuid: str = Field(..., description="Sent as X-PLANNR-ACCOUNT-UUID.")
    approved: list[str] | None = Field(
        None, description="Status uuids / names meaning approved; unset: any completed type."
    )
    rejected: list[str] = Field(["Rejected"], description="Status uuids / names meaning rejected.")
    taskable_type: Literal["client", "case", "plan"] | None = None
    taskable_uuid: str | None = None
    request_key_field: str | None = Field(
        None, description="A task custom field (reference) to record our request key in."
    )
    overdue_ends_wait: bool = Field(
        False, description="An open task past its due_at ends the wait as `due`."
    )

    def get_backend(self) -> PlannrBackend:
        return PlannrBackend(
            url=self.url,
            token=self.token.get_secret_value(),
            account_uuid=self.account_uuid,
            approved=self.approved,
            rejected=self.rejected,
            taskable_type=self.taskable_type,
            taskable_uuid=self.taskable_uuid,
            request_key_field=self.request_key_field,
            overdue_ends_wait=self.overdue_ends_wait,
        )


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
