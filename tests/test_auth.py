"""Tokens and secrets: stored so a database copy reveals nothing; revocable; rotatable."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from peopletasks.domain import Domain
from peopletasks.domain.principals import revoke_api_token
from peopletasks.service import create_app
from peopletasks.service.app import build_domain
from tests.conftest import TEST_KEY, Api, ApiFactory, settings_for


async def dump_database(domain: Domain) -> str:
    """Every value of every table, as text."""
    from peopletasks.store.tables import metadata

    parts: list[str] = []
    async with domain.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


async def test_a_copy_of_the_database_reveals_no_token_or_secret(api: Api, domain: Domain) -> None:
    task = await api.create()
    dump = await dump_database(domain)
    assert api.token is not None
    assert api.token not in dump
    assert api.token.removeprefix("pt_") not in dump
    assert task["approverSecret"] not in dump
    assert task["requesterSecret"] not in dump
    assert task["approverSecret"][24:] not in dump  # the MAC part


async def test_secrets_are_not_guessable_from_the_email_across_organizations(
    api: Api, new_api: ApiFactory
) -> None:
    mine = await api.create()
    other_org = await new_api("flows@example.com", org="guess-" + mine["id"])
    theirs = await other_org.create()
    assert mine["approver"] == theirs["approver"]
    assert mine["approverSecret"] != theirs["approverSecret"]


async def test_revoked_token_is_refused(new_api: ApiFactory, domain: Domain) -> None:
    caller = await new_api("temp@example.com")
    assert (await caller.get("/tasks")).status_code == 200
    assert caller.token is not None
    await revoke_api_token(domain, caller.token)
    response = await caller.get("/tasks")
    assert response.status_code == 401


async def test_signing_key_rotation_keeps_secrets_in_flight_while_listed(
    api: Api, database_url: str
) -> None:
    task = await api.create()
    secret = {"secret": task["approverSecret"]}

    async def status_with_keys(keys: list[str]) -> int:
        settings = settings_for(database_url, secret_key=keys)
        domain = build_domain(settings)
        app = create_app(settings, domain=domain)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://service"
            ) as client:
                response = await client.get(f"/people-task/tasks/{task['id']}", params=secret)
                return response.status_code
        finally:
            await domain.db.dispose()

    new_key = "a-brand-new-signing-key-fedcba9876543210"
    assert await status_with_keys([new_key, TEST_KEY]) == 200
    assert await status_with_keys([new_key]) == 401
