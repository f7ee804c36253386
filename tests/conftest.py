"""Fixtures: the real service on a real SQLite file and a real PostgreSQL cluster.

Each backend gets one migrated database per session; each test works in an
organization of its own (organizations never see each other), so tests are
isolated without re-creating the schema.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.domain.principals import create_api_token
from peopletasks.service import create_app
from peopletasks.service.app import build_domain
from peopletasks.service.workers import BackgroundWorkers
from peopletasks.settings import Settings
from peopletasks.store import migrate

if TYPE_CHECKING:
    from tests.support.postgres import PostgresCluster

# Prefect, when a test uses it, keeps to a home of its own and stays off the network.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="peopletasks-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TEST_KEY = "test-signing-key-0123456789abcdef"
IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    from tests.support.postgres import PostgresCluster, find_pg_bindir

    if find_pg_bindir() is None:
        if IN_CI:
            pytest.fail("PostgreSQL is not installed, and CI must test on it")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server, as production runs it (`prefect server start`, its own
    PREFECT_HOME, a free port; one per session): its API URL, which this process uses."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.support.prefect_server import PrefectServer

    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-server"),
        # Suspended runs past their timeout fail within a second (default: every 5 s).
        PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS="1",
    )
    with (
        server,
        temporary_settings({PREFECT_API_URL: server.api_url}),
        # Threads (flows run in them here) see it too, as with prefect_test_harness.
        _temporary_global_settings_context(get_settings_context()),
    ):
        yield server.api_url
        _drain_prefect_logs_and_events()


def _drain_prefect_logs_and_events() -> None:
    """Send what Prefect's background workers still hold before the server stops."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        for result in (APILogWorker.instance().drain(), EventsWorker.drain_all()):
            if inspect.isawaitable(result):
                await result

    run_coro_as_sync(drain())


_db_counter = itertools.count()


def new_database_url(request: pytest.FixtureRequest, backend: str, tmp: Path) -> str:
    """A fresh, migrated database of `backend`."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / f'peopletasks-{next(_db_counter)}.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"pt_{uuid.uuid4().hex[:12]}")
    migrate(url)
    return url


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "environment": "test",
        "secret_key": [TEST_KEY],
        "background_workers": False,
        "allow_private_webhooks": True,
        # Fast retries so that recovery is seen within a test.
        "webhook_retry_base_seconds": 0.2,
        "webhook_retry_max_delay_seconds": 1.0,
        "webhook_poll_seconds": 0.2,
        "webhook_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    return new_database_url(request, backend, tmp_path_factory.mktemp(backend))


@pytest.fixture(scope="session")
async def domain(database_url: str) -> AsyncIterator[Domain]:
    domain = build_domain(settings_for(database_url))
    try:
        yield domain
    finally:
        await domain.db.dispose()


@pytest.fixture(scope="session")
async def workers(database_url: str, domain: Domain) -> AsyncIterator[BackgroundWorkers]:
    """The service's background work (webhook dispatcher, deadline scheduler), running."""
    running = BackgroundWorkers(domain, settings_for(database_url))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture(scope="session")
async def http(database_url: str, domain: Domain) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to the real app in process (ASGI)."""
    app = create_app(settings_for(database_url), domain=domain)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


class Api:
    """The API as one caller sees it (a token, or none)."""

    def __init__(self, http: httpx.AsyncClient, token: str | None, email: str) -> None:
        self.http = http
        self.token = token
        self.email = email

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        return await self.http.request(method, f"/people-task{path}", headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def create(self, **fields: Any) -> dict[str, Any]:
        body = {
            "title": "Vacation 1-5 Dec",
            "requester": "employee@example.com",
            "approver": "lead@example.com",
            **fields,
        }
        response = await self.post("/tasks", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


ApiFactory = Callable[..., Awaitable[Api]]


@asynccontextmanager
async def service_on(
    url: str, email: str = "flows@example.com", *, org: str = "own-store", **settings: Any
) -> AsyncIterator[tuple[Domain, Api]]:
    """The app in process on a store of its own (`url`, and `settings` beside the
    tests'): its domain, and a caller `email` with an API token in organization `org`.
    The store is closed after."""
    domain = build_domain(settings_for(url, **settings))
    app = create_app(settings_for(url, **settings), domain=domain)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as http:
            token = await create_api_token(domain, email, organization=org)
            yield domain, Api(http, token, email)
    finally:
        await domain.db.dispose()


@pytest.fixture
async def new_api(http: httpx.AsyncClient, domain: Domain) -> ApiFactory:
    """Make callers: `await new_api("x@example.com")`; all in one fresh organization
    unless `org=` names another."""
    default_org = f"org-{uuid.uuid4().hex[:10]}"

    async def make(
        email: str = "flows@example.com", *, org: str | None = None, admin: bool = False
    ) -> Api:
        token = await create_api_token(domain, email, organization=org or default_org, admin=admin)
        return Api(http, token, email)

    return make


@pytest.fixture
async def api(new_api: ApiFactory) -> Api:
    """An automation's API token in a fresh organization."""
    return await new_api("flows@example.com")


@pytest.fixture
def anonymous(http: httpx.AsyncClient) -> Api:
    return Api(http, None, "")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    return dict(body["error"])
