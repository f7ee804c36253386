"""Property test over /openapi.json (schemathesis): no 5xx, answers match the schema.

Runs against the real `peopletasks serve` process on SQLite, with a valid API token
and a store holding real tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from peopletasks.service import create_app
from tests.conftest import TEST_KEY, settings_for
from tests.support.server import ServiceProcess, cli, service_env


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    env = service_env(f"sqlite+aiosqlite:///{directory / 'fuzz.db'}", TEST_KEY)
    token = cli("token", "create", "--email", "fuzz@example.com", env=env).strip().splitlines()[-1]
    with ServiceProcess(env) as service:
        for i in range(3):
            httpx.post(
                f"{service.url}/people-task/tasks",
                headers={"Authorization": f"Bearer {token}"},
                json={"title": f"t{i}", "requester": "r@example.com", "approver": "a@example.com"},
            ).raise_for_status()
        yield service.url, token


# Built from the app itself (no server needed to list the operations).
SCHEMA = schemathesis.openapi.from_dict(create_app(settings_for("sqlite://")).openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_api_never_fails_and_matches_its_schema(
    operation: APIOperation, live_service: tuple[str, str]
) -> None:
    url, token = live_service

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                negative_data_rejection,
            ],
        )

    check()
