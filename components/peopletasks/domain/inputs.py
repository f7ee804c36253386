"""What callers may send: bodies, validated, unknown fields refused, each error naming
its field. A task's create and edit bodies are made from its fields (`fields.FIELDS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, Field, create_model, model_validator

from peopletasks.domain.fields import BY_NAME, EDITABLE, FIELDS, OnCreate
from peopletasks.domain.values import (
    Comment,
    Email,
    Input,
    NoteText,
    OptionKey,
    Secret,
    Timestamp,
    no_control_chars,
)


class TaskInput(Input):
    """A task body: `given()` is what the caller sent (public name -> validated value)."""

    def given(self) -> dict[str, Any]:
        # Not `exclude_unset=True`: it would also drop the defaults of nested values.
        return self.model_dump(include=self.model_fields_set)

    def with_defaults(self) -> dict[str, Any]:
        return self.model_dump()


def _create_fields() -> dict[str, Any]:
    made: dict[str, Any] = {}
    for f in FIELDS:
        if f.on_create is OnCreate.REQUIRED:
            made[f.name] = (f.given_as, Field(description=f.description or None))
        elif f.on_create is OnCreate.OPTIONAL:
            kind = f.given_as | None if f.clearable else f.given_as
            made[f.name] = (kind, Field(f.create_default, description=f.description or None))
    return made


def _edit_fields() -> dict[str, Any]:
    made: dict[str, Any] = {
        f.name: (f.given_as | None, Field(None, description=f.description or None))
        for f in EDITABLE
    }
    # A status set by edit is a decision (the approver's), with its comment.
    made["status"] = (BY_NAME["status"].given_as | None, Field(None, description="A decision."))
    made["comment"] = (Comment | None, Field(None, description="Recorded with the decision."))
    return made


if TYPE_CHECKING:
    TaskCreate = TaskInput
    TaskEdit = TaskInput
else:
    TaskCreate = create_model(
        "TaskCreate",
        __base__=TaskInput,
        __doc__="A new task. `title`, `requester` and `approver` are required; the rest is "
        "optional.",
        **_create_fields(),
    )
    TaskEdit = create_model(
        "TaskEdit",
        __base__=TaskInput,
        __doc__="Fields to change; absent fields stay as they are (`null` clears an optional one).",
        **_edit_fields(),
    )


class Decide(Input):
    """Body of approve / reject (all optional)."""

    secret: Secret | None = Field(
        None, description="The approver secret (or pass it as a query parameter, or a token)."
    )
    comment: Comment | None = None


class Respond(Input):
    """Body of `PUT /tasks/{id}/respond`."""

    secret: Secret | None = Field(
        None, description="The approver's secret (or pass it as a query parameter, or a token)."
    )
    option: OptionKey = Field(description="The key of one of the task's options.")
    comment: Comment | None = None
    data: dict[str, Any] | None = Field(None, description="The task's form, filled in.")


class NoteCreate(Input):
    """A note to append to a task; its author is the caller."""

    text: NoteText
    secret: Secret | None = Field(
        None, description="An approver or requester secret (or pass it as a query parameter)."
    )


class PrefectResume(Input):
    """Resume a paused or suspended Prefect flow run with the decision as run input."""

    flowRunId: UUID = Field(description="The flow run to resume.")
    apiUrl: Annotated[
        str, Field(min_length=1, max_length=2000), AfterValidator(no_control_chars)
    ] = Field(description="Prefect's API URL, e.g. http://127.0.0.1:4200/api.")
    apiKey: Annotated[str, Field(max_length=500), AfterValidator(no_control_chars)] | None = Field(
        None, description="A Prefect Cloud API key (sent as a bearer token; stored)."
    )


class WebhookCreate(Input):
    """`url` (POST the event there) or `prefect` (resume a flow run), and the task."""

    taskId: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(no_control_chars)]
    url: (
        Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(no_control_chars)]
        | None
    ) = None
    prefect: PrefectResume | None = None

    @model_validator(mode="after")
    def _one_target(self) -> WebhookCreate:
        if (self.url is None) == (self.prefect is None):
            raise ValueError("give exactly one of url and prefect")
        return self


class Reassign(Input):
    """Pass a task to someone else (`PUT /tasks/{id}/reassign`)."""

    to: Email = Field(description="The new approver.")
    comment: Comment | None = Field(None, description="Why; the new approver reads it.")
    secret: Secret | None = Field(
        None, description="The approver secret (or pass it as a query parameter, or a token)."
    )


class Delegation(Input):
    """While `start` <= now < `end`, new tasks for `from` go to `to`."""

    from_: Email = Field(alias="from", description="Whose tasks.")
    to: Email = Field(description="Who decides them instead.")
    start: Timestamp | None = Field(None, description="From when (default: now).")
    end: Timestamp = Field(description="Until when.")
