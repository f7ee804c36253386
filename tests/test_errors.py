"""One exception tree: every error peopletasks raises descends from `errors.Error`, is
defined in errors.py, is drawn in its docstring, and survives pickling (Prefect pickles
what a task raises) with its attributes."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import peopletasks
from peopletasks import errors

#: How to make an instance of a class whose __init__ takes more than a message. A new
#: class that cannot be made with a message alone fails the test until it is added here.
SAMPLES: dict[type[errors.Error], Callable[[], errors.Error]] = {
    errors.PeopleTaskError: lambda: errors.PeopleTaskError(
        "bad", details=[{"field": "title", "message": "too long"}], code="custom"
    ),
    errors.Conflict: lambda: errors.Conflict("decided", task={"id": "t1", "status": "approved"}),
    errors.ValidationFailed: lambda: errors.ValidationFailed.field("title", "too long"),
    errors.BackendError: lambda: errors.BackendError(
        "create task", "busy", status_code=503, outcome_unknown=True
    ),
    errors.ApprovalDue: lambda: errors.ApprovalDue("t1", "2026-12-01T17:00:00Z"),
    errors.MailDeliveryError: lambda: errors.MailDeliveryError(
        recipients=["a@example.com"],
        code=550,
        smtp_message="no such user",
        message_id="<m@x>",
        permanent=True,
        attempts=2,
        server="smtp.example.com:25",
    ),
    errors.ApprovalTimeout: lambda: errors.ApprovalTimeout("t1", 30.0),
    errors.RequestKeyConflict: lambda: errors.RequestKeyConflict(
        "k1", "t1", {"title": ("Old", "New")}
    ),
    errors.LinkProblem: lambda: errors.LinkProblem("expired", "the link expired", {"id": "t1"}),
    errors.InvalidSignature: lambda: errors.InvalidSignature("stale", reason="timestamp"),
}


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(peopletasks.__path__, "peopletasks."):
        if info.name.startswith("peopletasks.store.migrations"):
            continue  # Alembic's scripts run only under Alembic
        yield importlib.import_module(info.name)


def _tree() -> list[type[errors.Error]]:
    found: list[type[errors.Error]] = []
    pending: list[type[errors.Error]] = [errors.Error]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_of_the_package_is_in_the_one_tree() -> None:
    """Private control-flow signals that never leave their module are the exception."""
    strays = []
    for module in _modules():
        for name, cls in vars(module).items():
            if not (inspect.isclass(cls) and issubclass(cls, BaseException)):
                continue
            if not cls.__module__.startswith("peopletasks.") or name.startswith("_"):
                continue
            if not issubclass(cls, errors.Error) or cls.__module__ != "peopletasks.errors":
                strays.append(f"{cls.__module__}.{cls.__qualname__}")
    assert strays == []


def test_the_docstring_draws_every_class() -> None:
    list(_modules())
    drawn = errors.__doc__ or ""
    for cls in _tree():
        if not cls.__name__.startswith("_"):
            assert re.search(rf"(?m)^[\s│├└─]*{cls.__name__}\s", drawn), cls.__name__


def _instance(cls: type[errors.Error]) -> errors.Error:
    sample = SAMPLES.get(cls)
    if sample is not None:
        return sample()
    try:
        return cls("what went wrong")
    except TypeError as exc:
        pytest.fail(f"{cls.__qualname__}: add an instance to SAMPLES ({exc})")


def _every_class() -> list[type[errors.Error]]:
    list(_modules())
    return sorted(_tree(), key=lambda cls: cls.__qualname__)


@pytest.mark.parametrize("cls", _every_class(), ids=lambda cls: cls.__qualname__)
def test_every_error_survives_pickling_with_its_attributes(cls: type[errors.Error]) -> None:
    error = _instance(cls)
    error.add_note("raised in a test")
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is cls
    assert again.args == error.args
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_http_errors_still_render_after_pickling() -> None:
    conflict = pickle.loads(pickle.dumps(SAMPLES[errors.Conflict]()))  # noqa: S301
    assert isinstance(conflict, errors.Conflict)
    assert conflict.status == 409
    assert conflict.to_body() == {
        "error": {
            "code": "conflict",
            "message": "decided",
            "details": [],
            "task": {"id": "t1", "status": "approved"},
        }
    }


def test_names_stay_importable_where_they_were_raised() -> None:
    from peopletasks.domain.links import LinkProblem
    from peopletasks.links import LinkInvalid
    from peopletasks.mail import MailDeliveryError
    from peopletasks.mail.send import MailDeliveryError as FromSend
    from peopletasks.prefect.connection import ServiceNotConfigured
    from peopletasks.settings import ConfigurationError
    from peopletasks.webhooks.signatures import InvalidSignature
    from peopletasks.webhooks.targets import TargetRefused
    from peopletasks.webhooks.transport import SendError, SendTimeout, UnsendableRequest

    assert (LinkProblem, LinkInvalid, MailDeliveryError, FromSend) == (
        errors.LinkProblem,
        errors.LinkInvalid,
        errors.MailDeliveryError,
        errors.MailDeliveryError,
    )
    assert (ServiceNotConfigured, ConfigurationError, InvalidSignature, TargetRefused) == (
        errors.ServiceNotConfigured,
        errors.ConfigurationError,
        errors.InvalidSignature,
        errors.TargetRefused,
    )
    assert (SendError, SendTimeout, UnsendableRequest) == (
        errors.SendError,
        errors.SendTimeout,
        errors.UnsendableRequest,
    )
    # Still what callers may have caught before.
    assert issubclass(errors.ConfigurationError, RuntimeError)
    assert issubclass(errors.ServiceNotConfigured, RuntimeError)
    assert peopletasks.BackendError is errors.BackendError
    assert peopletasks.ApprovalDue is errors.ApprovalDue
