"""Who is calling: a bearer API token, or a task secret (query or body)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer

from peopletasks.domain import Domain
from peopletasks.domain.principals import Principal, authenticate_secret, authenticate_token
from peopletasks.errors import InvalidRequest, Unauthorized
from peopletasks.service.routing import request_body


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


async def authenticate(domain: Domain, bearer: str | None, secret: str | None) -> Principal:
    """A secret, when given, speaks for its holder; otherwise the bearer token."""
    if secret:
        return await authenticate_secret(domain, secret)
    if bearer:
        return await authenticate_token(domain, bearer)
    raise Unauthorized("send `Authorization: Bearer <api token>`, or a task `secret`")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, read as `HTTPBearer` would
    (None without one)."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def bearer_of(request: Request) -> str | None:
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


async def current_principal(
    request: Request, domain: DomainDep, secret: SecretQuery = None
) -> Principal:
    """The caller: a task `secret` (query) speaks for its holder; otherwise the bearer
    token. Read here rather than through `HTTPBearer`; `security_in_openapi`
    documents the bearer scheme."""
    return await authenticate(domain, bearer_of(request), secret)


async def principal_with_body_secret(
    request: Request, domain: DomainDep, secret: SecretQuery = None
) -> Principal:
    """As `current_principal`, where the body may carry the secret too (approve,
    reject, add a note: Appmixer's clients send it there), before the query's. The
    body is not validated yet: a body that is not a JSON object with a text `secret`
    carries none."""
    try:
        body = await request_body(request)
    except InvalidRequest:
        body = None
    given = body.get("secret") if isinstance(body, dict) else None
    if not isinstance(given, str):
        given = None
    return await authenticate(domain, bearer_of(request), given or secret)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
#: The caller of a route whose body may carry the secret.
BodySecretPrincipalDep = Annotated[Principal, Depends(principal_with_body_secret)]


def security_in_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme on every API operation (auth is read in
    `current_principal`, not through a FastAPI security dependency)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[_bearer.scheme_name] = _bearer.model.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/people-task/") or path.startswith("/people-task/act"):
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.setdefault("security", [{_bearer.scheme_name: []}])
    return schema
