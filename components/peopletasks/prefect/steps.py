"""The steps of an approval, as Prefect tasks (Appmixer's ports, for builders who act
between them).

```
create_approval_task   the task (found again by its request key; updated when the request
                       changed; cached per key for systems that cannot find it themselves;
                       request_approval asks our service directly, see create_step)
register_resume        suspend mode: the service will resume this flow run (once per run
                       and task; refused by the service before any mail goes out)
send_approval_email    the signed Approve / Reject links (cached per task: never twice)
record_decision        a log line and a Markdown artifact on the run (once per run and task)
```
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from datetime import datetime
from typing import Any, Literal

from prefect import State, Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from peopletasks.backends.base import TaskBackend
from peopletasks.backends.service import SECRET_FIELDS, PeopleTaskClient
from peopletasks.errors import BackendError, RequestKeyConflict
from peopletasks.prefect.blocks import PeopleTaskMail, smtp_config_from
from peopletasks.prefect.connection import (
    BackendLike,
    ServiceLike,
    capabilities_of,
    connect,
    system_name,
)
from peopletasks.prefect.decision import Decision
from peopletasks.settings import component_settings
from peopletasks.timeutil import parse_datetime

IfExists = Literal["reuse", "update", "error"]
log = logging.getLogger("peopletasks.prefect")


def _iso(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _worth_retrying(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed create unless trying again cannot help (a 4xx) or could create a
    second task (the system may have acted on a request it did not answer)."""
    error = getattr(state, "data", None)
    if isinstance(error, BackendError | RequestKeyConflict):
        return isinstance(error, BackendError) and error.worth_retrying
    return True


#: Waits before retrying a create that failed for now (after the HTTP loop's own retries).
CREATE_RETRY_DELAYS = (1.0, 5.0, 15.0)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow or task run's logger; outside a run, the module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


@task(
    name="create-approval-task",
    retries=len(CREATE_RETRY_DELAYS),
    retry_delay_seconds=list(CREATE_RETRY_DELAYS),
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def create_approval_task(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | datetime | None = None,
    *,
    request_key: str | None = None,
    service: ServiceLike = None,
    backend: BackendLike = None,
    extra: dict[str, Any] | None = None,
    if_exists: IfExists = "reuse",
) -> dict[str, Any]:
    """Create the people task (Appmixer's `created` port): the task as the system returns it
    (for our service with its secrets and links).

    With a `request_key` our service already knows, it answers that task; `if_exists`
    says what then: `"reuse"` it as it is, `"update"` its title, description and
    deadline to this request's (while it is pending), or `"error"`: raise
    `RequestKeyConflict` when they differ. A different approver or requester is always
    a `RequestKeyConflict`: that is another request. Peoplelogic and Plannr record the
    key on the task (`mappings` / a custom field), and `arequest_approval` caches this
    step per flow run and key for them.
    `extra`: system-specific fields added to the create body (e.g. Plannr's `priority`).
    """
    deadline = _iso(decision_by)
    async with connect(service, backend) as client:
        created: dict[str, Any] = await client.create_task(
            title=title,
            approver=approver,
            requester=requester,
            description=description,
            decision_by=deadline,
            request_key=request_key,
            extra=extra,
        )
        if request_key is not None and isinstance(client, PeopleTaskClient):
            asked = {"title": title, "description": description, "decisionBy": deadline}
            created = await _reconcile(
                client, created, asked, approver, requester, request_key, if_exists
            )
        task_id = client.task_id_of(created)
        name = client.name
    run_logger().info("task %s in %s for %s", task_id, name, approver)
    return created


async def _reconcile(
    client: PeopleTaskClient,
    found: dict[str, Any],
    asked: dict[str, str | None],
    approver: str,
    requester: str,
    request_key: str,
    if_exists: IfExists,
) -> dict[str, Any]:
    """The task the key names, made to match the request (or a conflict raised)."""
    people = {"approver": approver, "requester": requester}
    others = {
        k: (found.get(k), v) for k, v in people.items() if str(found.get(k)).lower() != v.lower()
    }
    changed = {k: (found.get(k), v) for k, v in asked.items() if not _same(k, found.get(k), v)}
    if others or (changed and if_exists == "error"):
        raise RequestKeyConflict(request_key, str(found.get("id")), {**others, **changed})
    if not changed or if_exists == "reuse" or found.get("status") != "pending":
        return found  # (a decided task's terms are final)
    await client.update_task(
        str(found["id"]),
        title=asked["title"],
        description=asked["description"],
        decision_by=asked["decisionBy"],
    )
    run_logger().info(
        "task %s updated to this request: %s", found["id"], ", ".join(sorted(changed))
    )
    # Asked again, the service answers the task as it now is, with its secrets and links.
    again = await client.create_task(
        title=str(asked["title"]),
        approver=approver,
        requester=requester,
        description=str(asked["description"] or ""),
        decision_by=asked["decisionBy"],
        request_key=request_key,
    )
    return again


def _same(field: str, found: Any, asked: str | None) -> bool:
    if field == "description":
        return (found or "") == (asked or "")
    if field == "decisionBy":
        if found is None or asked is None:
            return found is None and asked is None
        try:
            return parse_datetime(str(found)) == parse_datetime(asked)
        except ValueError:
            return False
    return bool(found == asked)


def _create_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    key = parameters.get("request_key")
    if key is None:
        return None
    system = system_name(parameters.get("service"), parameters.get("backend"))
    digest = hashlib.sha256(f"{system}:{key}".encode()).hexdigest()[:32]
    return f"peopletasks-create-{digest}"


_create_once_per_key = Task(
    create_approval_task.fn,
    name="create-approval-task",
    retries=len(CREATE_RETRY_DELAYS),
    retry_delay_seconds=list(CREATE_RETRY_DELAYS),
    retry_condition_fn=_worth_retrying,
    cache_key_fn=_create_cache_key,
    persist_result=True,
    result_serializer="json",
)


def create_step(service: ServiceLike = None, backend: BackendLike = None) -> Any:
    """How `request_approval` creates its task.

    A system that finds a task by its key (our service) is simply asked, retrying what
    fails for now as the Prefect task would: no task run, so a run that starts again
    (a resumed suspension) finds its task in one call. A system that cannot is asked
    through `create_approval_task` cached per request key (a retried flow run then
    finds the task it created in Prefect's result storage).
    """
    if capabilities_of(service, backend).finds_by_key:
        return _create_retrying
    return _create_once_per_key


async def _create_retrying(*args: Any, **kwargs: Any) -> dict[str, Any]:
    for delay in (*CREATE_RETRY_DELAYS, None):
        try:
            return await create_approval_task.fn(*args, **kwargs)
        except BackendError as exc:
            if delay is None or not exc.worth_retrying:
                raise
            run_logger().warning("%s; trying again in %g s", exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _resume_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"peopletasks-resume-{parameters['flow_run_id']}-{parameters['task_id']}"


@task(
    name="register-resume",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=_worth_retrying,
    cache_key_fn=_resume_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def register_resume(
    task_id: str, *, flow_run_id: str, service: ServiceLike = None, backend: BackendLike = None
) -> str:
    """Have the service resume flow run `flow_run_id` when task `task_id` is decided; the
    webhook's id. Cached per run and task (a run that suspends again registers once).

    The service checks the target (Prefect's API URL) here: a refusal (e.g. a private
    address not named in the service's PEOPLETASKS_PREFECT_API_URL) fails this step.
    """
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL

    async with connect(service, backend) as client:
        if not isinstance(client, PeopleTaskClient):
            raise TypeError(f"{client.name} cannot resume a flow run")
        webhook = await client.register_prefect_resume(
            task_id,
            flow_run_id=flow_run_id,
            api_url=str(PREFECT_API_URL.value()),
            api_key=PREFECT_API_KEY.value(),
        )
    return str(webhook["id"])


def _mail_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"peopletasks-approval-mail-{parameters['task']['id']}"


@task(
    name="send-approval-email",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    cache_key_fn=_mail_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def send_approval_email(
    task: dict[str, Any],
    *,
    mail: Any = None,
    sender: str | None = None,
    reply_to: str | None = None,
    copy_to_requester: bool = True,
) -> list[str]:
    """Mail the approver the signed Approve / Reject links (and the requester a copy).

    Cached per task: a retried step, flow run or resumed suspension never mails twice.
    `mail`: a `PeopleTaskMail` block or a saved one's name, prefect-email's
    `EmailServerCredentials`, an `SmtpConfig`, or None: the block named by
    `PEOPLETASKS_MAIL_BLOCK`, else the `PEOPLETASKS_SMTP_*` environment.
    """
    from peopletasks.mail.render import render_approval_request, render_requester_copy
    from peopletasks.mail.send import Mailer

    if mail is None:
        mail = component_settings().mail_block
    if isinstance(mail, str):
        mail = await PeopleTaskMail.aload(mail.rpartition("/")[2])
    config = smtp_config_from(mail, sender=sender)
    public = {k: v for k, v in task.items() if k not in SECRET_FIELDS}
    # Each approver asked now gets their own links (one approver: the task's `links`).
    by_approver = task.get("approverLinks") or {task["approver"]: task["links"]}
    asked = [a["email"] for a in task.get("approvers") or () if a["status"] == "pending"]
    recipients = {to: by_approver[to] for to in asked if to in by_approver} or by_approver
    messages = [
        render_approval_request(
            public,
            approve_url=links["approve"],
            reject_url=links["reject"],
            sender=config.sender,
            to=to,
            reply_to=reply_to or config.reply_to,
        )
        for to, links in recipients.items()
    ]
    if copy_to_requester and task["requester"].lower() not in {a.lower() for a in recipients}:
        messages.append(
            render_requester_copy(
                public, sender=config.sender, to=task["requester"], reply_to=reply_to
            )
        )
    async with Mailer(config) as mailer:
        sent = [await mailer.send(message) for message in messages]
    run_logger().info("approval mail for task %s sent to %s", task["id"], ", ".join(recipients))
    return [delivery.message_id or "" for delivery in sent]


# --- the decision, visible in Prefect ------------------------------------------------------

_NOT_KEY = re.compile(r"[^a-z0-9-]+")


def decision_markdown(decision: Decision, link: str | None) -> str:
    """The decision as a Markdown table (the run's artifact)."""
    title = str(decision.task.get("title") or decision.task.get("name") or decision.task_id)
    task_cell = f"[{_cell(title)}]({link})" if link else _cell(title)
    when = (
        decision.decided_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if decision.decided_at else ""
    )
    rows = [
        ("Decision", f"**{decision.status}**"),
        ("By", _cell(decision.decided_by or "")),
        ("When", when),
        ("Comment", _cell(decision.comment or "")),
        ("Task", f"{task_cell} (`{decision.task_id}`)"),
    ]
    lines = [f"### {decision.status.capitalize()}: {_cell(title)}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


async def record_decision(decision: Decision, backend: TaskBackend) -> None:
    """Log the decision and put it on the flow run as a Markdown artifact (once per run and
    task: a run that passes an earlier approval again records nothing new)."""
    run_logger().info(
        "task %s %s by %s at %s%s",
        decision.task_id,
        decision.status,
        decision.decided_by or "nobody",
        decision.decided_at.isoformat() if decision.decided_at else "its deadline",
        f': "{decision.comment}"' if decision.comment else "",
    )
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    from prefect import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    key = _NOT_KEY.sub("-", f"approval-{decision.task_id}".lower()).strip("-")
    run = context.flow_run
    async with get_client() as prefect:
        if run.run_count > 1 or run.empirical_policy.pause_keys:
            # Not the body's first run (a retry, a resumed suspension): an earlier one
            # may have recorded it.
            existing = await prefect.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                ),
                limit=1,
            )
            if existing:
                return
        await prefect.create_artifact(
            ArtifactCreate(
                key=key,
                type="markdown",
                description=f"Decision on {decision.task_id}: {decision.status}",
                data=decision_markdown(decision, backend.task_url(decision.task_id)),
                flow_run_id=run.id,
            )
        )
