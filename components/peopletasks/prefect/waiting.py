"""Waiting for a decision: the wait modes, as a table, and `wait_for_decision`.

```
mode      the run     the process                                        needs
pause     Paused      waits on the system's long poll (our service       -
                      answers as the decision commits), else polls
suspend   Suspended   exits; the service resumes the run, which runs     resumes_flow_runs,
                      again from the top and finds the decision          a deployment
poll      Running     asks every `poll_interval` seconds                 -
```

`WAIT_MODES` holds these rows; `Waiting` says what a row means.

Neither kind of wait costs the flow run a retry: a pause leaves the run's count of
attempts as it was, and a wait that times out raises `ApprovalTimeout` (not Python's
`TimeoutError`, which Prefect turns into TimedOut without retrying).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from pydantic import ValidationError

from peopletasks.backends.base import Capabilities, TaskBackend, TaskOutcome
from peopletasks.errors import ApprovalDue, ApprovalTimeout, BackendError
from peopletasks.prefect.connection import BackendLike, ServiceLike, capabilities_of, connect
from peopletasks.prefect.decision import Decision, ResumeInput
from peopletasks.timeutil import format_datetime

WaitMode = Literal["pause", "suspend", "poll"]
OnDue = Literal["return", "reject", "raise"]
#: One long poll to our service lasts at most this long; then it is asked again.
LONG_POLL_SECONDS = 25.0
T = TypeVar("T")


@dataclass(frozen=True)
class Waiting:
    """How a wait mode waits (one row of `WAIT_MODES`)."""

    #: The run shows Paused in Prefect while the process waits.
    shows_paused: bool = False
    #: The process waits on the system's long poll when it has one (else it polls).
    long_poll: bool = False
    #: The process exits; the system resumes the run with the decision.
    suspends: bool = False

    def check(self, capabilities: Capabilities, system: str) -> None:
        """Refuse a mode the system cannot serve (before anything is created)."""
        if self.suspends and not capabilities.resumes_flow_runs:
            raise ValueError(
                f"wait='suspend' needs a task system that resumes the flow run (our People "
                f"Task service); {system} sends no webhooks: use wait='pause' (polls while "
                "the run shows Paused) or wait='poll'"
            )

    def check_run(self) -> None:
        """Refuse a mode this run cannot use (before anything is created)."""
        if not self.suspends:
            return
        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise RuntimeError("wait='suspend' needs a flow run (of a deployment)")
        if context.flow_run.deployment_id is None:
            raise RuntimeError(
                "wait='suspend' needs a deployment (flow.serve or a work pool): the run is "
                "started again when it is resumed; run this flow from a deployment, or wait "
                "with wait='pause'"
            )


WAIT_MODES: dict[str, Waiting] = {
    "pause": Waiting(shows_paused=True, long_poll=True),
    "suspend": Waiting(suspends=True),
    "poll": Waiting(),
}


def wait_mode(wait: str, service: ServiceLike = None, backend: BackendLike = None) -> Waiting:
    if wait not in WAIT_MODES:
        raise ValueError(f"wait must be one of {', '.join(WAIT_MODES)}, not {wait!r}")
    from peopletasks.prefect.connection import system_name

    mode = WAIT_MODES[wait]
    mode.check(capabilities_of(service, backend), system_name(service, backend))
    return mode


async def watch(
    backend: TaskBackend,
    task_id: str,
    *,
    long_poll: bool,
    timeout: float | None,
    poll_interval: float,
) -> TaskOutcome:
    """Read the task until it is decided (or due): on its long poll when `long_poll`, else
    every `poll_interval` seconds. A system unreachable or failing for now is asked again
    (gently); one that refuses (a 4xx) fails the wait."""
    loop = asyncio.get_running_loop()
    give_up = None if timeout is None else loop.time() + timeout
    while True:
        remaining = LONG_POLL_SECONDS if give_up is None else give_up - loop.time()
        if remaining <= 0:
            raise ApprovalTimeout(task_id, timeout or 0.0)
        waited = False
        try:
            if long_poll:
                outcome = await backend.wait_outcome(task_id, min(LONG_POLL_SECONDS, remaining))
                waited = True
            else:
                outcome = await backend.read_outcome(task_id)
            if outcome.decided:
                return outcome
        except BackendError as exc:
            if not exc.worth_retrying:
                raise
            waited = False
        if not waited:
            await asyncio.sleep(max(0.0, min(poll_interval, remaining)))


async def show_paused(
    flow_run_id: Any, policy_before: Any, task_id: str, note: str, waiting: Awaitable[T]
) -> T:
    """Show the run as Paused in Prefect while `waiting` runs, then Running again, without
    counting the resumption as another attempt of the run (which would use up a retry)."""
    from prefect import get_client
    from prefect.states import Paused

    # Prefect counts a move into Running as an attempt unless the run is marked as
    # resuming; its own resume marks it only after counting. So the run is marked before
    # it pauses (nothing clears the mark until it runs again; the policy is the run's as
    # this run of the body started: a pause set with force adds no pause key to it), and
    # the resumption, when the decision is in, is one call.
    # A client only around each call, not held through the wait: a thousand waiting
    # runs would otherwise each keep an HTTP client (and its TLS context) alive.
    policy = policy_before.model_copy(update={"resuming": True})
    async with get_client() as prefect:
        await prefect.update_flow_run(flow_run_id, empirical_policy=policy)
        await prefect.set_flow_run_state(
            flow_run_id, Paused(pause_key=f"peopletasks-{task_id}", message=note), force=True
        )
    try:
        return await waiting
    finally:
        async with get_client() as prefect:
            await prefect.resume_flow_run(flow_run_id)


async def suspend_until_decided(
    backend: TaskBackend,
    task: dict[str, Any],
    task_id: str,
    note: str,
    *,
    timeout: float | None,
    service: ServiceLike,
    backend_arg: BackendLike,
) -> TaskOutcome:
    """Suspend the run until the service resumes it; the outcome, read from the task.

    Each run of the flow body comes here again: a decided task answers at once. The run
    input only wakes the run: a resume that is not this task's decision (a late
    redelivery, Prefect's own Resume button, a retry from the UI) finds the task pending,
    and the run suspends again, under the next key (a used key answers at once).
    """
    from prefect.flow_runs import asuspend_flow_run

    from peopletasks.prefect.steps import register_resume

    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    # The task as just created (or found again) says whether it is decided: a decision is
    # final, so a decided one needs no second read (a pending one is read again below).
    outcome = backend.outcome(task) if "status" in task else await backend.read_outcome(task_id)
    if outcome.decided:
        return outcome  # decided (e.g. this is the run after the resume)
    await register_resume(
        task_id, flow_run_id=str(context.flow_run.id), service=service, backend=backend_arg
    )
    outcome = await backend.read_outcome(task_id)
    if outcome.decided:
        return outcome  # decided while we registered
    form = ResumeInput.with_initial_data(description=note)
    logger = get_run_logger()
    for attempt in itertools.count():
        key = f"peopletasks-{task_id}" + (f"-{attempt}" if attempt else "")
        logger.info("%s; suspending the run until then", note)
        try:
            await asuspend_flow_run(
                wait_for_input=form, key=key, timeout=int(timeout) if timeout else None
            )
        except ValidationError:  # a used key whose input does not fit: woken all the same
            logger.info("resumed with input that is not a decision; reading the task")
        outcome = await backend.read_outcome(task_id)
        if outcome.decided:
            return outcome
        logger.warning(
            "the run was resumed, but task %s is still pending (a late resume, or Prefect's "
            "Resume button: it does not decide the task)",
            task_id,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def waiting_note(backend: TaskBackend, task: dict[str, Any], task_id: str) -> str:
    """Where the decision is made, for the Paused / Suspended run's message and Prefect's
    Resume form."""
    who = task.get("approver") or "the approver"
    where = backend.task_url(task_id)
    return (
        f"Waiting for {who} to decide task {task_id} in {backend.name}"
        + (f" ({where})" if where else "")
        + ": from the approval mail or the task itself. Resuming the run here does not decide it"
    )


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
    """Wait for a task's decision (see the table above for `wait`).

    With a `backend=` that has no webhooks (Peoplelogic, Plannr) the backend is polled
    every `poll_interval` seconds: `pause` does so while the run shows Paused, `poll`
    without, and `suspend` raises `ValueError`. `timeout` seconds without a decision raise
    `ApprovalTimeout` (in suspend mode, Prefect fails the suspended run then).

    On the deadline (`due`): `on_due="return"` gives the `due` decision, `"reject"` treats
    it as rejected, `"raise"` raises `ApprovalDue`. (Peoplelogic and Plannr report `due`
    only when built with `overdue_ends_wait=True`.)
    """
    mode = wait_mode(wait, service, backend)
    mode.check_run()
    task_dict = {"id": task} if isinstance(task, str) else task
    async with connect(service, backend) as client:
        task_id = client.task_id_of(task_dict)
        note = waiting_note(client, task_dict, task_id)
        context = FlowRunContext.get()
        in_run = context is not None and context.flow_run is not None
        if mode.suspends:
            outcome = await suspend_until_decided(
                client,
                task_dict,
                task_id,
                note,
                timeout=timeout,
                service=service,
                backend_arg=backend,
            )
        else:
            watching = watch(
                client,
                task_id,
                long_poll=mode.long_poll and client.capabilities.long_poll,
                timeout=timeout,
                poll_interval=poll_interval,
            )
            if mode.shows_paused and in_run:
                assert context is not None and context.flow_run is not None
                run = context.flow_run
                outcome = await show_paused(run.id, run.empirical_policy, task_id, note, watching)
            else:
                outcome = await watching
        decision = Decision.from_outcome(outcome)
        if in_run:
            from peopletasks.prefect.steps import record_decision

            await record_decision(decision, client)
    return apply_on_due(decision, on_due, format_datetime(outcome.due_at))


def apply_on_due(decision: Decision, on_due: OnDue, decision_by: str | None = None) -> Decision:
    if decision.status == "due":
        if on_due == "raise":
            raise ApprovalDue(decision.task_id, decision_by)
        if on_due == "reject":
            decision = decision.model_copy(update={"status": "rejected", "approved": False})
    return decision
