"""Which task system the components talk to, and what it can do.

`service=`: our People Task service as a `PeopleTaskService` block, a saved block's name,
a `PeopleTaskClient`, or None: the block named by `PEOPLETASKS_SERVICE_BLOCK`, else
`PEOPLETASKS_API_URL` / `PEOPLETASKS_API_TOKEN`.

`backend=`: any task system: a `TaskBackend` (`PeopleTaskClient`, `PeoplelogicBackend`,
`PlannrBackend`), one of our task-system blocks (`PeoplelogicTasks`, `PlannrTasks`,
`PeopleTaskService`), `"peoplelogic"` or `"plannr"` (from the `PEOPLETASKS_PEOPLELOGIC_*` /
`PEOPLETASKS_PLANNR_*` environment), or a saved block as `"block-type-slug/name"`.

A backend object the caller passes stays the caller's (it is not closed here);
one made here from a block, a name or the environment is closed after use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from peopletasks.backends.base import Capabilities, TaskBackend
from peopletasks.backends.peoplelogic import PeoplelogicBackend
from peopletasks.backends.plannr import PlannrBackend
from peopletasks.backends.service import PeopleTaskClient
from peopletasks.errors import ServiceNotConfigured
from peopletasks.settings import component_settings, service_connection

ServiceLike = Any  # PeopleTaskService | str (block name) | PeopleTaskClient | None
BackendLike = Any  # TaskBackend | task-system block | "peoplelogic" | "plannr" | "slug/name"

#: `backend=` names read from the environment.
FROM_ENVIRONMENT: dict[str, type[PeoplelogicBackend] | type[PlannrBackend]] = {
    "peoplelogic": PeoplelogicBackend,
    "plannr": PlannrBackend,
}
SERVICE_NAMES = ("service", "peopletasks")


def _given(service: ServiceLike, backend: BackendLike) -> Any:
    if service is not None and backend is not None:
        raise TypeError("pass service= (our People Task service) or backend=, not both")
    return backend if backend is not None else service


def backend_class(service: ServiceLike = None, backend: BackendLike = None) -> type[TaskBackend]:
    """The kind of task system chosen, without connecting (nothing is loaded or read)."""
    given = _given(service, backend)
    if given is None:
        return PeopleTaskClient
    if isinstance(given, TaskBackend):
        return type(given)
    made_by = getattr(given, "backend_class", None)
    if isinstance(made_by, type) and issubclass(made_by, TaskBackend):
        return made_by  # one of our blocks
    if isinstance(given, str):
        name = given.strip().lower()
        if name in FROM_ENVIRONMENT:
            return FROM_ENVIRONMENT[name]
        if backend is None or name in SERVICE_NAMES:
            return PeopleTaskClient  # service= a block name, or backend="service"
        if "/" in name:
            from prefect.blocks.core import Block

            try:
                block_class = Block.get_block_class_from_key(name.split("/", 1)[0])
            except KeyError:
                block_class = None
            made_by = getattr(block_class, "backend_class", None)
            if isinstance(made_by, type) and issubclass(made_by, TaskBackend):
                return made_by
    return TaskBackend  # unknown until loaded: assume nothing


def capabilities_of(service: ServiceLike = None, backend: BackendLike = None) -> Capabilities:
    """What the chosen task system can do."""
    return backend_class(service, backend).capabilities


def system_name(service: ServiceLike = None, backend: BackendLike = None) -> str:
    given = _given(service, backend)
    if isinstance(given, TaskBackend):
        return given.name
    kind = backend_class(service, backend)
    return kind.name if kind is not TaskBackend else str(given)


@asynccontextmanager
async def connect(service: ServiceLike = None, backend: BackendLike = None) -> AsyncIterator[Any]:
    """The backend to use (a `TaskBackend`; a `PeopleTaskClient` for our service)."""
    given = _given(service, backend)
    if isinstance(given, TaskBackend):
        yield given  # the caller owns it
        return
    client = await _backend_for(backend) if backend is not None else await _client_for(service)
    try:
        yield client
    finally:
        await client.aclose()


async def _backend_for(backend: BackendLike) -> TaskBackend:
    from prefect.blocks.core import Block

    if isinstance(backend, str):
        name = backend.strip().lower()
        if name in FROM_ENVIRONMENT:
            return FROM_ENVIRONMENT[name].from_env()
        if name in SERVICE_NAMES:
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

    if service is None:
        service = component_settings().service_block
        if service is None:
            try:
                connection = service_connection()
            except ValueError as exc:
                raise ServiceNotConfigured(
                    "no People Task service: pass service=PeopleTaskService(...) (or a saved "
                    "block's name), or set PEOPLETASKS_SERVICE_BLOCK (a saved block's name), "
                    f"or PEOPLETASKS_API_URL and PEOPLETASKS_API_TOKEN ({exc})"
                ) from None
            return PeopleTaskClient(connection.url, connection.token.get_secret_value())
    if isinstance(service, str):
        # "name" or "people-task-service/name"
        service = await PeopleTaskService.aload(service.rpartition("/")[2])
    if isinstance(service, PeopleTaskService):
        return service.get_client()
    raise TypeError(f"service must be a PeopleTaskService block or its name, not {service!r}")
