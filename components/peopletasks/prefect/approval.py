"""request_approval and request_approval_email, and the pieces they are made of.

```
create_approval_task  (a Prefect task: idempotent per request via the service's requestKey;
                       for Peoplelogic / Plannr, cached per flow run and request)
send_approval_email   (a Prefect task: cached per task, so a re-run never mails twice)
wait_for_decision     (pause | suspend | poll)
```

`service=` picks our People Task service; `backend=` any task system
(`PeoplelogicBackend`, `PlannrBackend`, their blocks, ...; see `prefect.connection`).
Systems without webhooks are polled: `wait="pause"` polls while the run shows
Paused, `wait="poll"` just polls, and `wait="suspend"` is refused before anything
is created (nothing could resume the run).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from prefect import State, Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flow_runs import asuspend_flow_run
from prefect.logging import get_run_logger
from prefect.utilities.asyncutils import run_coro_as_sync

from peopletasks.backends.base import TaskBackend, TaskOutcome
from peopletasks.backends.service import PeopleTaskClient
from peopletasks.errors import ApprovalDue, BackendError
from peopletasks.prefect.blocks import smtp_config_from
from peopletasks.prefect.connection import (
    BackendLike,
    ServiceLike,
    connect,
    is_idempotent,
    resumes_flow_runs,
    system_name,
)
from peopletasks.prefect.decision import SECRET_FIELDS, Decision, DecisionInput
from peopletasks.timeutil import format_datetime

WaitMode = Literal["pause", "suspend", "poll"]
OnDue = Literal["return", "reject", "raise"]
LONG_POLL_SECONDS = 25.0
WAIT_MODES = ("pause", "suspend", "poll")
T = TypeVar("T")


def _iso(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def request_key_for(key: str | None, *parts: Any) -> str | None:
    """Stable per flow run and request: a retried or resumed run finds its task again."""
    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else None
    if run_id is None and key is None:
        return None
    digest = key or hashlib.sha256(repr(parts).encode()).hexdigest()[:24]
    return f"{run_id}:{digest}" if run_id else digest


def _worth_retrying(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed create unless trying again cannot help (a 4xx) or could create a
    second task (the system may have acted on a request it did not answer)."""
    error = getattr(state, "data", None)
    if isinstance(error, BackendError):
        return error.worth_retrying
    return True


@task(
    name="create-approval-task",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
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
) -> dict[str, Any]:
    """Create the people task (Appmixer's `created` port): the task as the system returns it
    (for our service with its secrets and links).

    With the same `request_key` our service answers the task it already has; Peoplelogic
    and Plannr record the key on the task (`mappings` / a custom field), and
    `arequest_approval` caches this step per flow run and key for them.
    `extra`: system-specific fields added to the create body (e.g. Plannr's `priority`).
    """
    async with connect(service, backend) as client:
        created: dict[str, Any] = await client.create_task(
            title=title,
            approver=approver,
            requester=requester,
            description=description,
            decision_by=_iso(decision_by),
            request_key=request_key,
            extra=extra,
        )
        task_id = client.task_id_of(created)
        name = client.name
    get_run_logger().info("task %s in %s for %s", task_id, name, approver)
    return created


def _create_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    key = parameters.get("request_key")
    if key is None:
        return None
    system = system_name(parameters.get("service"), parameters.get("backend"))
    digest = hashlib.sha256(f"{system}:{key}".encode()).hexdigest()[:32]
    return f"peopletasks-create-{digest}"


def create_step(service: ServiceLike = None, backend: BackendLike = None) -> Any:
    """`create_approval_task`, cached per request key when the system cannot de-duplicate
    creates itself (a retried flow run then finds the task it created)."""
    return create_approval_task if is_idempotent(service, backend) else _create_once_per_key


_create_once_per_key = Task(
    create_approval_task.fn,
    name="create-approval-task",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    retry_condition_fn=_worth_retrying,
    cache_key_fn=_create_cache_key,
    persist_result=True,
    result_serializer="json",
)


def _check_wait(wait: str, service: ServiceLike, backend: BackendLike) -> None:
    if wait not in WAIT_MODES:
        raise ValueError(f"wait must be pause, suspend or poll, not {wait!r}")
    if wait == "suspend" and not resumes_flow_runs(service, backend):
        raise ValueError(
            f"wait='suspend' needs a task system that resumes the flow run (our People Task "
            f"service); {system_name(service, backend)} sends no webhooks: use wait='pause' "
            "(polls while the run shows Paused) or wait='poll'"
        )


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
    `mail`: a `PeopleTaskMail` block, prefect-email's `EmailServerCredentials`, an
    `SmtpConfig`, or None for the `PEOPLETASKS_SMTP_*` environment.
    """
    from peopletasks.mail.render import render_approval_request, render_requester_copy
    from peopletasks.mail.send import Mailer

    config = smtp_config_from(mail, sender=sender)
    public = {k: v for k, v in task.items() if k not in SECRET_FIELDS}
    links = task["links"]
    messages = [
        render_approval_request(
            public,
            approve_url=links["approve"],
            reject_url=links["reject"],
            sender=config.sender,
            to=task["approver"],
            reply_to=reply_to or config.reply_to,
        )
    ]
    if copy_to_requester and task["requester"].lower() != task["approver"].lower():
        messages.append(
            render_requester_copy(
                public, sender=config.sender, to=task["requester"], reply_to=reply_to
            )
        )
    async with Mailer(config) as mailer:
        sent = [await mailer.send(message) for message in messages]
    get_run_logger().info("approval mail for task %s sent to %s", task["id"], task["approver"])
    return [delivery.message_id or "" for delivery in sent]


async def _long_poll_until_decided(
    client: PeopleTaskClient, task_id: str, *, timeout: float | None, poll_interval: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    give_up = None if timeout is None else loop.time() + timeout
    while True:
        remaining = LONG_POLL_SECONDS if give_up is None else give_up - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no decision on task {task_id} within {timeout} s")
        try:
            current = await client.wait(task_id, timeout=min(LONG_POLL_SECONDS, remaining))
        except BackendError as exc:
            if exc.status_code is not None:
                raise
            # The service is unreachable for now: keep waiting, polling gently.
            await asyncio.sleep(poll_interval)
            continue
        if current["status"] != "pending":
            return current


async def _poll_until_decided(
    client: PeopleTaskClient, task_id: str, *, timeout: float | None, poll_interval: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    give_up = None if timeout is None else loop.time() + timeout
    while True:
        try:
            current = await client.get_task(task_id)
        except BackendError as exc:
            if exc.status_code is not None:
                raise
            current = {"status": "pending"}
        if current["status"] != "pending":
            return current
        if give_up is not None and loop.time() >= give_up:
            raise TimeoutError(f"no decision on task {task_id} within {timeout} s")
        await asyncio.sleep(poll_interval)


async def _poll_outcome(
    backend: TaskBackend, task_id: str, *, timeout: float | None, poll_interval: float
) -> TaskOutcome:
    """Ask any backend every `poll_interval` s until the task is decided (or due)."""
    loop = asyncio.get_running_loop()
    give_up = None if timeout is None else loop.time() + timeout
    while True:
        try:
            outcome = await backend.read_outcome(task_id)
            if outcome.decided:
                return outcome
        except BackendError as exc:
            if not exc.worth_retrying:
                raise
            # Unreachable, rate-limited or failing for now: keep waiting, gently.
        if give_up is not None and loop.time() >= give_up:
            raise TimeoutError(f"no decision on task {task_id} within {timeout} s")
        await asyncio.sleep(poll_interval)


async def _pause_while(flow_run_id: Any, task_id: str, waiting: Awaitable[T]) -> T:
    """Show the run as Paused in Prefect while `waiting` runs, then Running again."""
    from prefect import get_client
    from prefect.states import Paused

    # A client only around each call, not held through the wait: a thousand waiting
    # runs would otherwise each keep an HTTP client (and its TLS context) alive.
    async with get_client() as prefect:
        await prefect.set_flow_run_state(
            flow_run_id, Paused(pause_key=f"peopletasks-{task_id}"), force=True
        )
    try:
        result = await waiting
    finally:
        async with get_client() as prefect:
            await prefect.resume_flow_run(flow_run_id)
    return result


async def _suspend_until_decided(
    client: PeopleTaskClient, task: dict[str, Any], *, timeout: float | None
) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("wait='suspend' needs a flow run (of a deployment)")
    current = await client.get_task(task["id"])
    if current["status"] != "pending":
        return current  # decided (e.g. this is the re-run after the resume)
    await client.register_prefect_resume(
        task["id"],
        flow_run_id=str(context.flow_run.id),
        api_url=str(PREFECT_API_URL.value()),
        api_key=PREFECT_API_KEY.value(),
    )
    current = await client.get_task(task["id"])
    if current["status"] != "pending":
        return current  # decided while we registered
    # The run input only wakes us: the task says what was decided. A resume meant for
    # something else (a late redelivery of an earlier approval's decision) finds it
    # still pending, and the run suspends again, under the next key: a used key
    # answers at once (with its input) on every re-run.
    for attempt in itertools.count():
        key = f"peopletasks-{task['id']}" + (f"-{attempt}" if attempt else "")
        await asuspend_flow_run(
            wait_for_input=DecisionInput, key=key, timeout=int(timeout) if timeout else None
        )
        current = await client.get_task(task["id"])
        if current["status"] != "pending":
            return current
    raise AssertionError("unreachable")  # pragma: no cover


async def wait_for_decision(
    task: dict[str, Any] | str,
    *,
    wait: WaitMode = "pause",
    on_due: OnDue = "return",
    service: ServiceLike = None,
    backend: BackendLike = None,
    timeout: float | None = None,
    poll_interval: float = 5.0,
) -> Decision:
    """Wait for a task's decision.

    - `pause`: the run shows as Paused in Prefect; the process waits on the service
      (a long poll, answered the moment the decision commits), falling back to
      polling every `poll_interval` seconds while the service is unreachable.
    - `suspend`: the process exits (no worker held); the service resumes the run
      through Prefect's API and it re-enters here with the decision. Needs a
      deployment and persisted results.
    - `poll`: asks every `poll_interval` seconds; for networks with no inbound path.

    With a `backend=` that has no webhooks (Peoplelogic, Plannr) the backend is polled
    every `poll_interval` seconds: `pause` does so while the run shows Paused, `poll`
    without, and `suspend` raises `ValueError`.

    On the deadline (`due`): `on_due="return"` gives the `due` decision,
    `"reject"` treats it as rejected, `"raise"` raises `ApprovalDue`. (Peoplelogic and
    Plannr report `due` only when built with `overdue_ends_wait=True`.)
    """
    _check_wait(wait, service, backend)
    task_dict = {"id": task} if isinstance(task, str) else task
    async with connect(service, backend) as client:
        if not isinstance(client, PeopleTaskClient):
            outcome = await _wait_polling(client, task_dict, wait, timeout, poll_interval)
            due_at = format_datetime(outcome.due_at)
            return _apply_on_due(Decision.from_outcome(outcome), on_due, due_at)
        if wait == "poll":
            final = await _poll_until_decided(
                client, task_dict["id"], timeout=timeout, poll_interval=poll_interval
            )
        elif wait == "suspend":
            final = await _suspend_until_decided(client, task_dict, timeout=timeout)
        elif wait == "pause":
            waiting = _long_poll_until_decided(
                client, task_dict["id"], timeout=timeout, poll_interval=poll_interval
            )
            context = FlowRunContext.get()
            if context is not None and context.flow_run is not None:
                final = await _pause_while(context.flow_run.id, task_dict["id"], waiting)
            else:
                final = await waiting
    return _apply_on_due(Decision.from_task(final), on_due, final.get("decisionBy"))


async def _wait_polling(
    backend: TaskBackend,
    task: dict[str, Any],
    wait: WaitMode,
    timeout: float | None,
    poll_interval: float,
) -> TaskOutcome:
    task_id = backend.task_id_of(task)
    waiting = _poll_outcome(backend, task_id, timeout=timeout, poll_interval=poll_interval)
    context = FlowRunContext.get()
    if wait == "pause" and context is not None and context.flow_run is not None:
        return await _pause_while(context.flow_run.id, task_id, waiting)
    return await waiting


def _apply_on_due(decision: Decision, on_due: OnDue, decision_by: str | None = None) -> Decision:
    if decision.status == "due":
        if on_due == "raise":
            raise ApprovalDue(decision.task_id, decision_by)
        if on_due == "reject":
            decision = decision.model_copy(update={"status": "rejected", "approved": False})
    return decision


async def arequest_approval(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | datetime | None = None,
    *,
    wait: WaitMode = "pause",
    on_due: OnDue = "return",
    service: ServiceLike = None,
    backend: BackendLike = None,
    timeout: float | None = None,
    poll_interval: float = 5.0,
    key: str | None = None,
) -> Decision:
    """Ask `approver` to approve; wait; return the `Decision` (async flows).

    `backend=`: the task system (default: our People Task service, see `service=`).
    """
    _check_wait(wait, service, backend)
    if service is not None and backend is not None:
        raise TypeError("pass service= (our People Task service) or backend=, not both")
    created = await create_step(service, backend)(
        title,
        approver,
        requester,
        description,
        decision_by,
        request_key=request_key_for(key, title, approver, requester, description, decision_by),
        service=service,
        backend=backend,
    )
    return await wait_for_decision(
        created,
        wait=wait,
        on_due=on_due,
        service=service,
        backend=backend,
        timeout=timeout,
        poll_interval=poll_interval,
    )


async def arequest_approval_email(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | datetime | None = None,
    *,
    wait: WaitMode = "pause",
    on_due: OnDue = "return",
    service: ServiceLike = None,
    mail: Any = None,
    sender: str | None = None,
    reply_to: str | None = None,
    copy_to_requester: bool = True,
    timeout: float | None = None,
    poll_interval: float = 5.0,
    key: str | None = None,
) -> Decision:
    """As `arequest_approval`, and mail the approver the signed Approve / Reject links
    (and the requester a copy)."""
    created = await create_approval_task(
        title,
        approver,
        requester,
        description,
        decision_by,
        request_key=request_key_for(key, title, approver, requester, description, decision_by),
        service=service,
    )
    await send_approval_email(
        created,
        mail=mail,
        sender=sender,
        reply_to=reply_to,
        copy_to_requester=copy_to_requester,
    )
    return await wait_for_decision(
        created,
        wait=wait,
        on_due=on_due,
        service=service,
        timeout=timeout,
        poll_interval=poll_interval,
    )


def request_approval(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | datetime | None = None,
    *,
    wait: WaitMode = "pause",
    on_due: OnDue = "return",
    service: ServiceLike = None,
    backend: BackendLike = None,
    timeout: float | None = None,
    poll_interval: float = 5.0,
    key: str | None = None,
) -> Decision:
    """Ask `approver` to approve, wait, and return the `Decision`.

    `backend=` picks the task system: our People Task service by default (`service=`),
    or e.g. `PeoplelogicBackend(...)` / `PlannrBackend(...)` (polled; see docs/backends.md).

    Example:
        ```python
        from prefect import flow
        from peopletasks import request_approval

        @flow
        def release(version: str) -> None:
            decision = request_approval(
                title=f"Release {version}",
                approver="lead@example.com",
                requester="ci@example.com",
            )
            if decision.approved:
                ...
        ```
    """
    return run_coro_as_sync(
        arequest_approval(
            title,
            approver,
            requester,
            description,
            decision_by,
            wait=wait,
            on_due=on_due,
            service=service,
            backend=backend,
            timeout=timeout,
            poll_interval=poll_interval,
            key=key,
        )
    )


def request_approval_email(
    title: str,
    approver: str,
    requester: str,
    description: str = "",
    decision_by: str | datetime | None = None,
    *,
    wait: WaitMode = "pause",
    on_due: OnDue = "return",
    service: ServiceLike = None,
    mail: Any = None,
    sender: str | None = None,
    reply_to: str | None = None,
    copy_to_requester: bool = True,
    timeout: float | None = None,
    poll_interval: float = 5.0,
    key: str | None = None,
) -> Decision:
    """As `request_approval`, and mail the approver signed Approve / Reject links.

    Example:
        ```python
        from prefect import flow
        from peopletasks import request_approval_email

        @flow
        def vacation_request(employee: str, days: str) -> bool:
            decision = request_approval_email(
                title=f"Vacation {days}",
                description=f"{employee} asks for {days} off.",
                requester=employee,
                approver="lead@example.com",
                decision_by="2026-12-01T17:00:00Z",
            )
            return decision.approved
        ```
    """
    return run_coro_as_sync(
        arequest_approval_email(
            title,
            approver,
            requester,
            description,
            decision_by,
            wait=wait,
            on_due=on_due,
            service=service,
            mail=mail,
            sender=sender,
            reply_to=reply_to,
            copy_to_requester=copy_to_requester,
            timeout=timeout,
            poll_interval=poll_interval,
            key=key,
        )
    )
