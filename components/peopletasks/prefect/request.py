"""One declaration of what an approval request takes, shared by every entry point.

```
ApprovalRequest          request_approval, arequest_approval, request_approval_flow
 └── EmailApprovalRequest request_approval_email, arequest_approval_email,
                          request_approval_email_flow
```

An entry point is a body taking the request, made callable with the request's own
keyword parameters by `@takes(ApprovalRequest)`: its signature (what Python, mypy,
`help()` and Prefect's parameter form see) is the request's.

The task's request key (what finds a task again when a flow run runs once more, e.g.
after a suspension or a retry) is the flow run and the call's place in the flow:
the calling function, the line within it and how often that line has asked in this
run; or `key=` when given. The text, the deadline, the approver may change between
runs of one flow run: the task is updated (see `steps.create_approval_task`), never made
twice.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from types import FrameType
from typing import Any, Literal, ParamSpec, TypeVar, get_args

from prefect.context import FlowRunContext
from pydantic import BaseModel

from peopletasks.prefect.connection import BackendLike, ServiceLike, capabilities_of
from peopletasks.prefect.decision import Decision
from peopletasks.prefect.waiting import OnDue, WaitMode, wait_mode

Rule = Literal["any", "all", "quorum", "sequential"]
P = ParamSpec("P")
R = TypeVar("R", bound="ApprovalRequest")
T = TypeVar("T")


@dataclass(frozen=True)
class ApprovalRequest:
    """Ask `approver` to approve; wait for the decision.

    Args:
        title: What to approve (the task's title; the mail's subject).
        approver: Who decides (an e-mail address for our service; the person's id in
            Peoplelogic or Plannr); with our service, a list of addresses for several
            approvers, decided by `rule`.
        requester: Who asks (gets a copy of the mail).
        description: Details, Markdown.
        decision_by: The deadline (ISO 8601); unset: none.
        wait: How to wait: `pause` (the run shows Paused, the process waits), `suspend`
            (the process exits; the service resumes the run) or `poll`.
        on_due: What a passed deadline means: `return` the `due` decision, `reject`, or
            `raise` ApprovalDue.
        timeout: Seconds to wait before giving up (ApprovalTimeout); unset: no limit.
        poll_interval: Seconds between reads when polling.
        key: Names this request within the flow run (default: the call's place in it).
        service: Our People Task service: a PeopleTaskService block or a saved block's
            name; unset: PEOPLETASKS_SERVICE_BLOCK or PEOPLETASKS_API_URL / _API_TOKEN.
        backend: Another task system instead ("peoplelogic", "plannr", a block or a
            saved block's "slug/name").
        rule: With several approvers: `any` (the first response decides), `all`,
            `quorum` (`quorum` approvals) or `sequential` (in order).
        quorum: How many approvals decide under rule `quorum`.
        options: The approver's responses instead of Approve / Reject: a list of
            {"key", "label", "outcome": "approved" | "rejected"} (2-10); the decision's
            `option` is the key chosen.
        form: What the approver fills in: a pydantic model class (the decision's
            `data` comes back as an instance of it) or a JSON Schema object.
        allow_self_approval: Let the requester be among the approvers.
        reminders: The service reminds the pending approvers, e.g. {"every": "P1D",
            "beforeDue": ["PT1H"], "max": 5} (needs the service's SMTP).
        escalation: What the service does when nobody decided in time, e.g. {"after":
            "P2D", "to": "manager@example.com", "action": "notify" | "reassign" |
            "approve" | "reject"}.
    """

    title: str
    approver: str | list[str]
    requester: str
    description: str = ""
    decision_by: str | datetime | None = None
    _: KW_ONLY
    wait: WaitMode = "pause"
    on_due: OnDue = "return"
    timeout: float | None = None
    poll_interval: float = 5.0
    key: str | None = None
    service: ServiceLike = None
    backend: BackendLike = None
    rule: Rule = "any"
    quorum: int | None = None
    options: list[dict[str, str]] | None = None
    form: Any = None
    allow_self_approval: bool = False
    reminders: dict[str, Any] | None = None
    escalation: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.approver, list | tuple):
            object.__setattr__(self, "approver", list(self.approver))
        named = (("title", self.title), ("requester", self.requester))
        if not self.approvers:
            raise ValueError("approver: give at least one")
        for name, value in (*named, *(("approver", a) for a in self.approvers)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name}: must be a non-empty string (approver: or a list)")
        if self.rule not in get_args(Rule):
            raise ValueError(f"rule must be any, all, quorum or sequential, not {self.rule!r}")
        if (self.rule == "quorum") != (self.quorum is not None):
            raise ValueError("quorum= goes with rule='quorum' (and it needs one)")
        asked = self.service_fields()
        if asked and not capabilities_of(self.service, self.backend).action_links:
            raise TypeError(
                f"{', '.join(asked)}: only our People Task service has several approvers, options, "
                f"forms, reminders and escalation; backend={self.backend!r} has one assignee "
                "and two outcomes"
            )
        if isinstance(self.decision_by, datetime):
            object.__setattr__(self, "decision_by", self.decision_by.isoformat())
        if self.on_due not in get_args(OnDue):
            raise ValueError(f"on_due must be return, reject or raise, not {self.on_due!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive seconds (or None: no limit)")
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive seconds")
        if self.service is not None and self.backend is not None:
            raise TypeError("pass service= (our People Task service) or backend=, not both")
        wait_mode(self.wait, self.service, self.backend)

    @property
    def approvers(self) -> list[str]:
        return list(self.approver) if isinstance(self.approver, list) else [self.approver]

    @property
    def first_approver(self) -> str:
        return self.approvers[0]

    def service_fields(self) -> dict[str, Any]:
        """What the request asks of our service beyond one approver and two outcomes:
        the create body's fields."""
        fields: dict[str, Any] = {}
        if len(self.approvers) > 1:
            fields["approvers"] = self.approvers
        if self.rule != "any":
            fields["decisionRule"] = self.rule
        if self.quorum is not None:
            fields["quorum"] = self.quorum
        if self.options is not None:
            fields["options"] = self.options
        if self.form is not None:
            fields["form"] = form_schema(self.form)
        if self.allow_self_approval:
            fields["allowSelfApproval"] = True
        if self.reminders is not None:
            fields["reminders"] = self.reminders
        if self.escalation is not None:
            fields["escalation"] = self.escalation
        return fields

    def typed(self, decision: Decision) -> Decision:
        """The decision with its `data` as an instance of the form's model (if one)."""
        model = self.form
        if isinstance(model, type) and issubclass(model, BaseModel) and decision.data:
            return decision.model_copy(update={"data": model.model_validate(decision.data)})
        return decision

    @property
    def deadline(self) -> str | None:
        """`decision_by` as the ISO string sent to the task system."""
        assert not isinstance(self.decision_by, datetime)
        return self.decision_by


@dataclass(frozen=True)
class EmailApprovalRequest(ApprovalRequest):
    """As `ApprovalRequest`, and mail the approver the signed Approve / Reject links.

    Args:
        mail: How to send: a PeopleTaskMail block or a saved block's name, prefect-email's
            EmailServerCredentials, or a SmtpConfig; unset: PEOPLETASKS_MAIL_BLOCK or the
            PEOPLETASKS_SMTP_* environment.
        sender: The From address (default: the mail configuration's).
        reply_to: The Reply-To address.
        copy_to_requester: Send the requester a copy (without the links).
    """

    _: KW_ONLY
    mail: Any = None
    sender: str | None = None
    reply_to: str | None = None
    copy_to_requester: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not capabilities_of(self.service, self.backend).action_links:
            raise TypeError(
                "approval mail carries our service's signed links: pass service=, not "
                f"backend={self.backend!r}"
            )


def form_schema(form: Any) -> dict[str, Any]:
    """The JSON Schema of a form: a pydantic model class's, or the dict as given."""
    if isinstance(form, type) and issubclass(form, BaseModel):
        return form.model_json_schema()
    if isinstance(form, dict):
        return form
    raise TypeError("form: a pydantic model class or a JSON Schema object (a dict)")


# --- entry points -----------------------------------------------------------------------


def takes(request_type: Callable[P, R]) -> Callable[[Callable[[R, str], T]], Callable[P, T]]:
    """Make `body(request, call_site)` callable with `request_type`'s parameters.

    The result has the request's signature (and the body's docstring followed by the
    request's `Args:`), so Prefect builds a flow's parameters from it.
    """
    assert isinstance(request_type, type)
    fields = inspect.signature(request_type, eval_str=True)
    args = _args_section(request_type)

    def decorate(body: Callable[[R, str], T]) -> Callable[P, T]:
        returns = inspect.signature(body, eval_str=True).return_annotation

        def entry(*args: P.args, **kwargs: P.kwargs) -> T:
            request = request_type(*args, **kwargs)
            return body(request, call_site(sys._getframe(1)))

        entry.__name__ = body.__name__
        entry.__qualname__ = body.__qualname__
        entry.__module__ = body.__module__
        entry.__doc__ = f"{inspect.cleandoc(body.__doc__ or '')}\n\n{args}"
        entry.__signature__ = fields.replace(return_annotation=returns)  # type: ignore[attr-defined]
        entry.__annotations__ = {
            **{name: p.annotation for name, p in fields.parameters.items()},
            "return": returns,
        }
        return entry

    return decorate


def _args_section(request_type: type) -> str:
    """The `Args:` of a request type and its bases, in field order."""
    lines: list[str] = []
    for cls in reversed(request_type.__mro__):
        doc = inspect.cleandoc(cls.__doc__ or "") if "__doc__" in vars(cls) else ""
        if "Args:" in doc and cls is not object:
            lines.extend(doc.split("Args:", 1)[1].strip("\n").splitlines())
    return "Args:\n" + "\n".join(lines)


# --- the request key --------------------------------------------------------------------

_site_counts: dict[str, tuple[tuple[int, int], Counter[str]]] = {}
_site_lock = threading.Lock()


def call_site(frame: FrameType | None) -> str:
    """Where an approval is asked for: `module:function:line-within-it`.

    The line is counted from the function's first line, so code added above the function
    (or an unrelated edit elsewhere in the file) does not move it.
    """
    if frame is None:
        return "?"
    code = frame.f_code
    module = frame.f_globals.get("__name__", "?")
    return f"{module}:{code.co_qualname}:{frame.f_lineno - code.co_firstlineno}"


def request_key_for(key: str | None, site: str) -> str | None:
    """The task's request key: the flow run, and `key` or the call's place in the run.

    Stable across every run of one flow run (a resumed suspension, a retry), distinct for
    each approval asked in it. Outside a flow run: `key` (None: no de-duplication).
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return key
    run_id = str(context.flow_run.id)
    if key is None:
        # The nth call from this place in this run of the flow body.
        this_run = (id(context), context.flow_run.run_count)
        with _site_lock:
            seen, counts = _site_counts.get(run_id, (this_run, Counter()))
            if seen != this_run:  # a new run of the body (e.g. an in-process retry)
                counts = Counter()
            counts[site] += 1
            _site_counts[run_id] = (this_run, counts)
            nth = counts[site]
        key = hashlib.sha256(f"{site}#{nth}".encode()).hexdigest()[:24]
    return f"{run_id}:{key}"


__all__ = [
    "ApprovalRequest",
    "EmailApprovalRequest",
    "OnDue",
    "WaitMode",
    "call_site",
    "request_key_for",
    "takes",
]
