"""Which People Task service the components talk to: a block, a block's name, a client,
or the `PEOPLETASKS_API_URL` / `PEOPLETASKS_API_TOKEN` environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from peopletasks.backends.service import PeopleTaskClient

ServiceLike = Any  # PeopleTaskService | str (block name) | PeopleTaskClient | None


class ServiceNotConfigured(RuntimeError):
    pass


@asynccontextmanager
async def connect(service: ServiceLike = None) -> AsyncIterator[PeopleTaskClient]:
    if isinstance(service, PeopleTaskClient):
        yield service  # the caller owns it
        return
    client = await _client_for(service)
    try:
        yield client
    finally:
        await client.aclose()


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
