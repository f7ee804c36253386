"""How an API request is answered: `ApiRoute`, the route class of every API route.

FastAPI documents each route from its endpoint's signature, as usual; `ApiRoute`
changes only how a request is turned into the endpoint's arguments. FastAPI's own
request handler spends most of a `GET /tasks/{id}` on solving the parameters
(`solve_dependencies` re-inspects every field's annotation on every request: 40 us
of a 165 us request, measured in process). `ApiRoute` works out once, when the
route is built, where each argument comes from, and per request only reads and
validates them, with the same pydantic fields, in the same order, with the same
errors. Per request, in this order:

1. the endpoint's parameters other than the body (dependencies first: the caller
   is resolved before the body is read);
2. the body, read once: parsed as JSON when its content type says JSON (as
   FastAPI does), validated with the endpoint's body model;
3. the endpoint, which returns its `Response`.

Errors are raised, never rendered here: the app's exception handlers answer them,
inside every middleware. When `app.dependency_overrides` replaces one of a route's
dependencies (or a signature holds what the lean path does not read, such as a
header parameter), FastAPI's `solve_dependencies` fills step 1 instead; tests hold
the two to the same answers (tests/test_dispatch.py).
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from fastapi._compat import ModelField, field_annotation_is_sequence, get_missing_field_error
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    get_validation_alias,
    request_body_to_args,
    solve_dependencies,
)
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from peopletasks.errors import InvalidRequest, ValidationFailed

#: Where the parsed JSON body is kept in the request's scope (read once).
_JSON_BODY = "peopletasks.json_body"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this content type as JSON:
    `application/json` or `application/<anything>+json`."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def request_body(request: Request) -> Any:
    """The body as FastAPI validates it: None when empty, the parsed JSON when the
    content type is JSON, the bytes otherwise (the model then refuses them).
    Read and parsed once per request; invalid JSON is `InvalidRequest` (400)."""
    scope = request.scope
    if _JSON_BODY in scope:
        return scope[_JSON_BODY]
    length = content_type = chunked = None
    for name, header in scope["headers"]:
        if name == b"content-length":
            length = header
        elif name == b"content-type":
            content_type = header
        elif name == b"transfer-encoding":
            chunked = header
    value: Any = None
    # Without a length or chunks, HTTP/1.1 says there is no body: nothing to wait for.
    body = await request.body() if chunked or (length and length != b"0") else b""
    if body:
        value = body
        if is_json(content_type and content_type.decode("latin-1")):
            value = json_loads(body)
    scope[_JSON_BODY] = value
    return value


#: A run of digits that may be a whole number beyond 64 bits (2**63 has 19 digits).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_loads(body: bytes) -> Any:
    """A JSON body, as the standard library reads it: orjson, except where the body may
    hold a whole number beyond 64 bits (orjson reads those as floats, silently rounded;
    the validators must see the number sent)."""
    try:
        if not _LONG_NUMBER.search(body):
            return orjson.loads(body)
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the body is not valid JSON: nested too deep") from None


@dataclass(frozen=True, slots=True)
class _Parameter:
    """One path or query parameter, or the body: where to read it, how to validate it."""

    name: str
    alias: str
    field: ModelField
    location: Literal["path", "query", "body"]
    many: bool  #: a list: every value of the query parameter
    required: bool
    default: Any
    copy_default: bool
    validate_default: bool

    @classmethod
    def of(cls, field: ModelField, location: Literal["path", "query", "body"]) -> _Parameter:
        info = field.field_info
        return cls(
            name=field.name,
            alias=get_validation_alias(field),
            field=field,
            location=location,
            many=field_annotation_is_sequence(info.annotation),  # type: ignore[arg-type]
            required=info.is_required(),
            default=field.default,
            copy_default=isinstance(field.default, (list, dict, set)),
            validate_default=bool(info.validate_default),
        )

    def read(self, request: Request) -> tuple[Any, list[Any]]:
        """The validated value, or the errors (as FastAPI's `request_params_to_args`)."""
        if self.location == "path":
            value = request.path_params.get(self.alias)
        elif not request.scope["query_string"]:
            value = None
        elif self.many:
            value = request.query_params.getlist(self.alias) or None
        else:
            value = request.query_params.get(self.alias)
        return self.validate(value, (self.location, self.alias))

    def validate(self, value: Any, loc: tuple[str, ...]) -> tuple[Any, list[Any]]:
        """As FastAPI's `_validate_value_with_model_field`: None is missing."""
        if value is None:
            if self.required:
                return None, [get_missing_field_error(loc=loc)]
            default = copy.deepcopy(self.default) if self.copy_default else self.default
            if not self.validate_default:
                return default, []
            value = default
        return self.field.validate(value, {}, loc=loc)


@dataclass(frozen=True, slots=True)
class _Call:
    """One dependant (the endpoint or a dependency) as the lean path fills it."""

    call: Callable[..., Awaitable[Any]]
    name: str | None
    request_name: str | None
    parameters: tuple[_Parameter, ...]
    dependencies: tuple[_Call, ...]
    use_cache: bool

    async def solve(
        self, request: Request, cache: dict[Any, Any]
    ) -> tuple[dict[str, Any], list[Any]]:
        """Its arguments (without the body), in `solve_dependencies`' order: dependencies
        first (a dependency with invalid parameters is not called), then path, then query."""
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for dependency in self.dependencies:
            arguments, failed = await dependency.solve(request, cache)
            if failed:
                errors.extend(failed)
                continue
            if dependency.use_cache and dependency.call in cache:
                solved = cache[dependency.call]
            else:
                solved = await dependency.call(**arguments)
                cache.setdefault(dependency.call, solved)
            if dependency.name is not None:
                values[dependency.name] = solved
        for parameter in self.parameters:
            value, failed = parameter.read(request)
            if failed:
                errors.extend(failed)
            else:
                values[parameter.name] = value
        if self.request_name is not None:
            values[self.request_name] = request
        return values, errors


def _lean(dependant: Dependant, *, top: bool) -> _Call | None:
    """The lean form of `dependant`, or None when it holds what the lean path does not
    read (headers, cookies, query models, a body below the top, sync or generator
    dependencies, security scopes, ...): FastAPI solves those routes."""
    if (
        dependant.header_params
        or dependant.cookie_params
        or (dependant.body_params and not top)
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
        or dependant.call is None
        or not (top or inspect.iscoroutinefunction(dependant.call))
    ):
        return None
    if len(dependant.query_params) == 1 and isinstance(
        dependant.query_params[0].field_info.annotation, type
    ):
        annotation = dependant.query_params[0].field_info.annotation
        if issubclass(annotation, BaseModel):
            return None  # a query model: FastAPI spreads its fields
    dependencies = []
    for sub in dependant.dependencies:
        lean = _lean(sub, top=False)
        if lean is None:
            return None
        dependencies.append(lean)
    parameters = [_Parameter.of(f, "path") for f in dependant.path_params]
    parameters += [_Parameter.of(f, "query") for f in dependant.query_params]
    return _Call(
        call=dependant.call,
        name=dependant.name,
        request_name=dependant.request_param_name,
        parameters=tuple(parameters),
        dependencies=tuple(dependencies),
        use_cache=dependant.use_cache,
    )


def _query_names(dependant: Dependant) -> Iterator[str]:
    for field in dependant.query_params:
        yield get_validation_alias(field)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _overrides(scope: Scope) -> Mapping[Any, Any]:
    overrides: Mapping[Any, Any] = getattr(scope.get("app"), "dependency_overrides", None) or {}
    return overrides


class ApiRoute(APIRoute):
    """A FastAPI route whose arguments are read by a plan made once (see the module)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        assert inspect.iscoroutinefunction(endpoint), f"{path}: an API endpoint is async"
        #: Everything but the body, for `solve_dependencies` (the body is read after).
        self.head = replace(self.dependant, body_params=[])
        self.lean = _lean(self.head, top=True)
        self.dependency_calls = frozenset(_calls(self.dependant))
        #: The query parameters the signature declares: any other is refused.
        self.query_names = frozenset(_query_names(self.dependant))
        body = self.dependant.body_params
        #: One body model, not embedded: validated as `request_body_to_args` would.
        self.body = (
            _Parameter.of(body[0], "body")
            if len(body) == 1 and not self._embed_body_fields
            else None
        )
        #: FastAPI's wrapper (exit stacks for dependencies with `yield`) around the
        #: FastAPI-solved answer; the lean answer needs neither.
        self.with_fastapi = self.app
        self.app = self.handle_lean

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.answer_with_fastapi

    async def handle_lean(self, scope: Scope, receive: Receive, send: Send) -> None:
        overrides = _overrides(scope)
        if self.lean is None or (overrides and not self.dependency_calls.isdisjoint(overrides)):
            await self.with_fastapi(scope, receive, send)
            return
        request = Request(scope, receive, send)
        self.refuse_unexpected(request)
        values, errors = await self.lean.solve(request, {})
        response = await self.answer(request, values, errors, lean=True)
        await response(scope, receive, send)

    def refuse_unexpected(self, request: Request) -> None:
        """Before anything else: a query parameter the route does not declare (a typo
        is not ignored), and a control character in a path or query parameter (ids and
        secrets hold none; PostgreSQL refuses NUL in text), are a 422 naming them."""
        for name, value in request.path_params.items():
            if _CONTROL.search(value):
                raise ValidationFailed.field(name, "must not contain control characters")
        if not request.scope["query_string"]:
            return
        query = request.query_params
        unknown = sorted(set(query) - self.query_names)
        if unknown:
            known = ", ".join(sorted(self.query_names)) or "none"
            raise ValidationFailed(
                f"{unknown[0]}: unknown query parameter; known: {known}",
                details=[{"field": name, "message": "unknown query parameter"} for name in unknown],
            )
        for name, value in query.multi_items():
            if _CONTROL.search(value):
                raise ValidationFailed.field(name, "must not contain control characters")

    async def answer_with_fastapi(self, request: Request) -> Response:
        """FastAPI's own parameter and body solving (with overrides): the reference the
        lean path is held to."""
        self.refuse_unexpected(request)
        solved = await solve_dependencies(
            request=request,
            dependant=self.head,
            dependency_overrides_provider=request.app,
            async_exit_stack=request.scope["fastapi_inner_astack"],
            embed_body_fields=False,
        )
        return await self.answer(request, solved.values, solved.errors, lean=False)

    async def answer(
        self, request: Request, values: dict[str, Any], errors: list[Any], *, lean: bool
    ) -> Response:
        """With the parameters solved (`values`, or `errors`): the body (validated as
        FastAPI's `request_body_to_args` would, or by it), then the endpoint."""
        if errors:
            raise RequestValidationError(errors)
        if lean and self.body is not None:
            body = await request_body(request)
            value, errors = self.body.validate(body, ("body",))
            if errors:
                raise RequestValidationError(errors, body=body)
            values[self.body.name] = value
        elif self.dependant.body_params:
            body = await request_body(request)
            body_values, errors = await request_body_to_args(
                body_fields=self.dependant.body_params,
                received_body=body,
                embed_body_fields=self._embed_body_fields,
            )
            if errors:
                raise RequestValidationError(errors, body=body)
            values.update(body_values)
        response = await self.endpoint(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{self.path}: an API endpoint returns a Response")
        return response


def busiest_first(
    routes: Sequence[BaseRoute], busiest: Collection[Callable[..., Any]]
) -> list[BaseRoute]:
    """`routes` with those of the `busiest` endpoints first (otherwise in order). The
    router tries each route in turn until one matches, ~1 us each: the busiest
    requests should not wait behind the others."""
    return sorted(routes, key=lambda route: getattr(route, "endpoint", None) not in busiest)


def in_declared_order(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document with its paths, and each path's operations, in the order
    `routes` declares them (whatever order the router tries them in); paths that
    `routes` does not hold follow, as they were."""
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    ordered: dict[str, dict[str, Any]] = {}
    for route in routes:
        item = paths.get(getattr(route, "path", ""))
        if item is None:
            continue
        into = ordered.setdefault(route.path, {})  # type: ignore[attr-defined]
        for method in sorted(getattr(route, "methods", None) or ()):
            if method.lower() in item:
                into[method.lower()] = item[method.lower()]
    for path, item in paths.items():
        into = ordered.setdefault(path, {})
        for key, value in item.items():
            into.setdefault(key, value)
    schema["paths"] = ordered
    return schema
