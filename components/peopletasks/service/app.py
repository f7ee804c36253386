"""The FastAPI application: `create_app()` wires settings, store, domain and routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from peopletasks import __version__
from peopletasks.domain import Domain
from peopletasks.errors import StoreUnavailable
from peopletasks.service.auth import DomainDep, security_in_openapi
from peopletasks.service.dashboard import router as dashboard_router
from peopletasks.service.errors import install_error_handlers
from peopletasks.service.limits import BodyLimit
from peopletasks.service.pages import router as pages_router
from peopletasks.service.responses import FastJSONResponse, error_response, json
from peopletasks.service.routes import BUSIEST, router
from peopletasks.service.routing import busiest_first, in_declared_order
from peopletasks.service.schemas import Health, error_responses
from peopletasks.service.workers import BackgroundWorkers
from peopletasks.settings import Branding, Settings, get_settings
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
        dashboard_url=settings.dashboard_url,
        link_max_age_seconds=settings.link_max_age_seconds,
        wait_recheck_seconds=settings.wait_recheck_seconds,
        person_secrets=settings.person_secrets,
        mail_enabled=settings.mails,
        notify_default=tuple(settings.notify_default),
    )


def create_app(settings: Settings | None = None, *, domain: Domain | None = None) -> FastAPI:
    """The service. Pass `domain` to share one (tests); otherwise it is built from settings.

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

    app = FastAPI(
        # The API's routes are the app's own (not an included router: FastAPI 0.150
        # matches an included router's routes through a layered context, twice per
        # request), first in line, the busiest first; each is an `ApiRoute`
        # (service/routing.py).
        routes=busiest_first(router.routes, BUSIEST),
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
    # The dashboard is branded like the mail (PEOPLETASKS_BRAND_*): refused at start if wrong.
    app.state.branding = Branding.from_env()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(pages_router)
    app.include_router(dashboard_router)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = security_in_openapi(
                in_declared_order(plain_openapi(), router.routes)
            )
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
        """200 while the store answers (and, after a failed write, would take writes
        again); otherwise 503 with why (`store_full`, `store_busy`, `store_unavailable`)."""
        try:
            await domain.db.health()
        except StoreUnavailable as failure:
            return error_response(failure)
        return json(
            {"status": "ok", "database": domain.db.dialect, "waiting": domain.decisions.waiting}
        )

    return app
