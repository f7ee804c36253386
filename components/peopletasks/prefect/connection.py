"""Which task system the components talk to.

`service=`: our People Task service as a `PeopleTaskService` block, a block's name,
a `PeopleTaskClient`, or None for the `PEOPLETASKS_API_URL` / `PEOPLETASKS_API_TOKEN`
environment.

`backend=`: any task system: a `TaskBackend` (`PeopleTaskClient`,
`PeoplelogicBackend`, `PlannrBackend`), a block with `get_backend()` (our
`PeoplelogicTasks` / `PlannrTasks` / `PeopleTaskService`), `"peoplelogic"` or
`"plannr"` (from the `PEOPLETASKS_PEOPLELOGIC_*` / `PEOPLETASKS_PLANNR_*`
environment), or a saved block as `"block-type-slug/name"`.

A backend object the caller passes stays the caller's (it is not closed here);
one made here from a block, a name or the environment is closed after use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from peopletasks.backends.base import TaskBackend
from peopletasks.backends.service import PeopleTaskClient
from peopletasks.errors import ServiceNotConfigured as ServiceNotConfigured

ServiceLike = Any  # PeopleTaskService | str (block name) | PeopleTaskClient | None
BackendLike = Any  # TaskBackend | block with get_backend() | "peoplelogic" | "plannr" | "slug/name"


@asynccontextmanager
async def connect(service: ServiceLike = None, backend: BackendLike = None) -> AsyncIterator[Any]:
    """The backend to use (a `TaskBackend`; a `PeopleTaskClient` for our service)."""
    if service is not None and backend is not None:
        raise TypeError("pass service= (our People Task service) or backend=, not both")
    given = backend if backend is not None else service
    if isinstance(given, TaskBackend):
        yield given  # the caller owns it
        return
    client = await _backend_for(backend) if backend is not None else await _client_for(service)
    try:
        yield client
    finally:
        await client.aclose()


def is_idempotent(service: ServiceLike = None, backend: BackendLike = None) -> bool:
    """Whether the chosen system itself answers the same task for a repeated request key."""
    if isinstance(service, TaskBackend) and backend is None:
        return service.idempotent_create
    if backend is None:
        return True  # our service (a block, a name, a client or the environment)
    if isinstance(backend, TaskBackend):
        return backend.idempotent_create
    if isinstance(backend, str) and backend.startswith("people-task-service/"):
        return True
    return bool(getattr(backend, "idempotent_create", False))


def resumes_flow_runs(service: ServiceLike = None, backend: BackendLike = None) -> bool:
    """Whether the system can resume a suspended flow run (webhooks): only our service."""
    if isinstance(service, TaskBackend) and backend is None:
        return service.resumes_flow_runs
    if backend is None:
        return True
    if isinstance(backend, TaskBackend):
        return backend.resumes_flow_runs
    if isinstance(backend, str) and backend.startswith("people-task-service/"):
        return True
    return bool(getattr(backend, "resumes_flow_runs", False))


def system_name(service: ServiceLike = None, backend: BackendLike = None) -> str:
    if isinstance(service, TaskBackend) and backend is None:
        return service.name
    if backend is None:
        return PeopleTaskClient.name
    if isinstance(backend, TaskBackend):
        return backend.name
    return str(getattr(backend, "system_name", backend))


async def _backend_for(backend: BackendLike) -> TaskBackend:
    from prefect.blocks.core import Block

    if isinstance(backend, str):
        from peopletasks.backends.peoplelogic import PeoplelogicBackend
        from peopletasks.backends.plannr import PlannrBackend

        name = backend.strip().lower()
        if name == "peoplelogic":
            return PeoplelogicBackend.from_env()
        if name == "plannr":
            return PlannrBackend.from_env()
        if name in ("service", "peopletasks"):
            return await _client_for(None)
        if "/" not in backend:
            raise ValueError(
                f"backend={backend!r}: use 'peoplelogic', 'plannr' (from the environment), "
                "or a saved block as 'block-type-slug/name'"
            )
        backend = await Block.aload(backend)
    get_backend = getattr(backend, "get_backend", None)
    if isinstance(backend, Block) and callable(get_backend):
        made = get_backend()
        if isinstance(made, TaskBackend):
            return made
    raise TypeError(
        "backend must be a TaskBackend (PeopleTaskClient, PeoplelogicBackend, PlannrBackend), "
        f"a block with get_backend(), 'peoplelogic', 'plannr' or 'block-type/name', not {backend!r}"
    )


async def _client_for(service: ServiceLike) -> PeopleTaskClient:
    from peopletasks.prefect.blocks import PeopleTaskService

    if isinstance(service, str):
        service = await PeopleTaskService.aload(service)
    if isinstance(service, PeopleTaskService):
        return service.get_client()
    if service is not None:
        raise TypeError(f"service must be a PeopleTaskService block or its name, not {service!r}")
    url = os.environ.get("PEOPLETASKS_API_URL")
    token = os.environ.get("PEOPLETASKS_API_TOKEN")
    if not url or not token:
        raise ServiceNotConfigured(
            "no People Task service: pass service=PeopleTaskService(...) (or a block name), "
            "or set PEOPLETASKS_API_URL and PEOPLETASKS_API_TOKEN"
        )
    return PeopleTaskClient(url, token)
