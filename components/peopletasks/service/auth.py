"""Who is calling: a bearer API token, or a task secret (query or body)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from peopletasks.domain import Domain
from peopletasks.domain.principals import Principal, authenticate_secret, authenticate_token
from peopletasks.errors import Unauthorized, ValidationFailed


async def get_domain(request: Request) -> Domain:
    domain: Domain = request.app.state.domain
    return domain


DomainDep = Annotated[Domain, Depends(get_domain)]
SecretQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="An approverSecret or requesterSecret (instead of a bearer token).",
    ),
]
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiToken",
    description="An API token from `peopletasks token create --email E`.",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def authenticate(
    domain: Domain, bearer: HTTPAuthorizationCredentials | None, secret: str | None
) -> Principal:
    """A secret, when given, speaks for its holder; otherwise the bearer token."""
    if secret:
        return await authenticate_secret(domain, secret)
    if bearer is not None and bearer.credentials.strip():
        return await authenticate_token(domain, bearer.credentials.strip())
    raise Unauthorized("send `Authorization: Bearer <api token>`, or a task `secret`")


async def current_principal(
    domain: DomainDep, bearer: BearerDep, secret: SecretQuery = None
) -> Principal:
    return await authenticate(domain, bearer, secret)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def only_query_parameters(*allowed: str):  # type: ignore[no-untyped-def]
    """A dependency that refuses unknown query parameters (a typo should not be ignored)."""
    names = set(allowed)

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - names)
        if unknown:
            raise ValidationFailed(
                f"{unknown[0]}: unknown query parameter; known: {', '.join(sorted(names))}",
                details=[{"field": name, "message": "unknown query parameter"} for name in unknown],
            )

    return Depends(check)
