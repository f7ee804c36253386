"""The FastAPI application: `create_app()` wires settings, store, domain and routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from peopletasks import __version__
from peopletasks.domain import Domain
from peopletasks.errors import PeopleTaskError
from peopletasks.service.auth import DomainDep, security_in_openapi
from peopletasks.service.errors import install_error_handlers
from peopletasks.service.fastlane import FastLane
from peopletasks.service.pages import router as pages_router
from peopletasks.service.responses import FastJSONResponse, error_response, json
from peopletasks.service.routes import router
from peopletasks.service.schemas import Health, error_responses
from peopletasks.service.workers import BackgroundWorkers
from peopletasks.settings import Settings, get_settings
from peopletasks.signing import Signer
from peopletasks.store import Database
from peopletasks.webhooks.targets import target_check

DESCRIPTION = """
Human approval steps: tasks that a person approves or rejects, compatible with
Appmixer's People Task API.

Authenticate with `Authorization: Bearer <api token>` (`peopletasks token create
--email E`), or with a task secret (`secret`): the `approverSecret` reads,
approves and rejects that approver's tasks; the `requesterSecret` only reads.

Errors are `{"error": {"code": "...", "message": "...", "details": [{"field", "message"}]}}`.
"""


def settle_garbage_collector() -> None:
    """Once started, keep what is loaded out of the collector's way.

    Everything imported and built at start-up lives as long as the process; a full
    collection walked all of it and paused the service ~60 ms (measured: a 1-client
    list p99 of 64 ms vs p50 7 ms). Frozen, those objects are never walked again; a
    higher first threshold makes young collections rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def build_domain(settings: Settings) -> Domain:
    database = Database(settings.database_url)
    return Domain(
        db=database,
        signer=Signer(settings.signing_keys()),
        auth_cache_seconds=settings.auth_cache_seconds,
        public_url=settings.public_url,
        link_max_age_seconds=settings.link_max_age_seconds,
        wait_recheck_seconds=settings.wait_recheck_seconds,
    )


class PeopleTaskApp(FastAPI):
    """FastAPI with the fast lane (`service.fastlane`) in front of everything: its
    plain hot requests skip FastAPI's and Starlette's per-request layers."""

    fast_lane: FastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_lane is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast_lane(scope, receive, send)

    async def behind_lane(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What the fast lane passes on: the FastAPI application."""
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, domain: Domain | None = None, fast_lane: bool = True
) -> FastAPI:
    """The service. Pass `domain` to share one (tests); otherwise it is built from settings.
    `fast_lane=False` leaves every request to the FastAPI routes (see `service.fastlane`).

    The store must be migrated first (`peopletasks serve` does it).
    """
    settings = settings or get_settings()
    settings.signing_keys()  # refuse to start with a placeholder key outside development

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = app.state.domain is None
        if own:
            app.state.domain = build_domain(settings)
        workers = None
        if settings.background_workers:
            workers = BackgroundWorkers(app.state.domain, settings)
            await workers.start()
        settle_garbage_collector()
        try:
            yield
        finally:
            if workers is not None:
                await workers.stop()
            if own:
                await app.state.domain.db.dispose()
                app.state.domain = None

    app = PeopleTaskApp(
        title="peopletasks",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=FastJSONResponse,
        lifespan=lifespan,
    )
    app.state.domain = domain
    app.state.settings = settings
    app.state.target_check = target_check(
        allow_private=settings.allow_private_webhooks, prefect_apis=settings.prefect_api_url
    )
    install_error_handlers(app)
    app.include_router(router)
    if fast_lane:
        app.fast_lane = FastLane(app.behind_lane, state_app=app)
    app.include_router(pages_router)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = security_in_openapi(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(
        "/healthz",
        tags=["service"],
        operation_id="health",
        response_model=Health,
        responses=error_responses(503),
    )
    async def healthz(domain: DomainDep) -> Any:
        try:
            async with domain.db.read() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            unavailable = PeopleTaskError(
                f"the store does not answer: {type(exc).__name__}", code="unavailable"
            )
            unavailable.status = 503
            return error_response(unavailable)
        return json(
            {"status": "ok", "database": domain.db.dialect, "waiting": domain.decisions.waiting}
        )

    return app
