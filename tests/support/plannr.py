"""A stand-in for Plannr's task API, written from plannr-task-api.txt.

```
POST /api/v1/task         201 the task (as the reference's example) | 401 | 403 | 404 | 422
GET  /api/v1/task/{uuid}  200 the task | 401 | 403 | 404
PUT  /api/v1/task/{uuid}  200 the task | 401 | 403 | 404 | 422
```

The reference documents the create call; reading and updating one task follow
Plannr's resource paths (`/api/v1/task/{uuid}`), answering the same task object.
Auth: `Authorization: Bearer <token>` (401 "Unauthenticated." otherwise) and
`X-PLANNR-ACCOUNT-UUID` naming the token's account (403 otherwise). Errors in
Laravel's shape: `{"message": ..., "errors": {field: [...]}}` (422), an unknown
taskable is 404. The firm's task statuses: Incomplete, Complete and Rejected (both
of the completed type). The test decides as a person would (`decide`: set the status,
`completed_at`, `completed_by`), and can make the next create answer 429 once.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.standin import Served

PRIORITIES = ("low", "medium", "high", "highest")
TASKABLE_TYPES = ("client", "case", "plan")
STAMP = "%Y-%m-%d %H:%M:%S"


def _status(name: str, position: int, completed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": str(uuid.uuid4()),
        "colour": "#398898",
        "position": position,
        "created_at": "2025-04-22T13:44:18+01:00",
        "updated_at": "2025-04-22T13:44:18+01:00",
        "is_archived": False,
        "is_not_started": not completed and position == 1,
        "is_type_completed": completed,
    }


def account(first: str, last: str) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}@example.com",
        "role": "adviser",
        "type": "adviser",
        "photo_url": None,
        "created_at": "2025-04-22T13:44:18+01:00",
        "updated_at": "2025-04-22T13:44:18+01:00",
        "external_references": [],
    }


def plannr_now() -> str:
    return datetime.now(UTC).strftime(STAMP)


@dataclass
class PlannrStandIn:
    token: str = "plannr-personal-access-token-0123456789"
    automation: dict[str, Any] = field(default_factory=lambda: account("Auto", "Mation"))
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            s["name"]: s
            for s in (
                _status("Incomplete", 1, False),
                _status("Complete", 2, True),
                _status("Rejected", 3, True),
            )
        }
    )
    plan: dict[str, Any] = field(
        default_factory=lambda: {"uuid": str(uuid.uuid4()), "name": "Pension plan"}
    )
    custom_fields: tuple[str, ...] = ("peopletasks_request_key", "favourite_pet")
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    create_attempts: list[float] = field(default_factory=list)
    _failures: list[tuple[int, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    served: Served | None = None

    def __post_init__(self) -> None:
        for person in (account("Lena", "Lead"), account("Adam", "Adviser")):
            self.people[person["first_name"].lower()] = person

    @property
    def account_uuid(self) -> str:
        return str(self.automation["uuid"])

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    # -- what the test does -------------------------------------------------

    def fail_next_create(self, status: int = 429, retry_after: str | None = "1") -> None:
        with self._lock:
            self._failures.append((status, retry_after))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(t) for t in self.tasks.values() if t["name"] == name]

    def decide(self, task_uuid: str, status: str, *, by: str) -> None:
        """A person moves the task to `status` in Plannr (Complete, Rejected ...)."""
        with self._lock:
            task = self.tasks[task_uuid]
            task["status"] = dict(self.statuses[status])
            if task["status"]["is_type_completed"]:
                task["completed_at"] = plannr_now()
                task["completed_by"] = dict(self.people[by])
            task["updated_at"] = plannr_now()

    # -- the API -------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI()

        def error(status: int, message: str, **more: Any) -> Any:
            headers = more.pop("headers", None)
            return JSONResponse({"message": message, **more}, status_code=status, headers=headers)

        def auth(request: Request) -> Any:
            header = request.headers.get("authorization", "")
            if header != f"Bearer {self.token}":
                return error(401, "Unauthenticated.")
            if request.headers.get("x-plannr-account-uuid") != self.account_uuid:
                return error(403, "This action is unauthorized.")
            return None

        def invalid(field_name: str, message: str) -> Any:
            return error(422, message, errors={field_name: [message]})

        async def payload(request: Request, creating: bool) -> tuple[dict[str, Any] | None, Any]:
            try:
                body = await request.json()
            except ValueError:
                return None, error(400, "The request body is not valid JSON.")
            if not isinstance(body, dict):
                return None, error(400, "The request body must be an object.")
            problem = self._check(body, creating)
            if problem is not None:
                return None, invalid(*problem)
            return body, None

        @app.post("/api/v1/task")
        async def create(request: Request) -> Any:
            with self._lock:
                self.create_attempts.append(time.monotonic())
                failure = self._failures.pop(0) if self._failures else None
            refused = auth(request)
            if refused is not None:
                return refused
            body, refused = await payload(request, creating=True)
            if refused is not None:
                return refused
            assert body is not None
            if body.get("taskable_uuid") and body["taskable_uuid"] != self.plan["uuid"]:
                kind = str(body.get("taskable_type", "plan")).capitalize()
                return error(404, f"No query results for model [{kind}] {body['taskable_uuid']}")
            if failure is not None:
                status, retry_after = failure
                headers = {"Retry-After": retry_after} if retry_after else None
                return error(status, "Too Many Attempts.", headers=headers)
            return JSONResponse(self._store(body), status_code=201)

        @app.get("/api/v1/task/{task_uuid}")
        async def read(task_uuid: str, request: Request) -> Any:
            refused = auth(request)
            if refused is not None:
                return refused
            with self._lock:
                if task_uuid not in self.tasks:
                    return error(404, f"No query results for model [Task] {task_uuid}")
                return JSONResponse(dict(self.tasks[task_uuid]))

        @app.put("/api/v1/task/{task_uuid}")
        async def update(task_uuid: str, request: Request) -> Any:
            refused = auth(request)
            if refused is not None:
                return refused
            body, refused = await payload(request, creating=False)
            if refused is not None:
                return refused
            assert body is not None
            with self._lock:
                if task_uuid not in self.tasks:
                    return error(404, f"No query results for model [Task] {task_uuid}")
                task = self.tasks[task_uuid]
                for key in ("name", "description", "priority", "due_at"):
                    if key in body:
                        task[key] = body[key]
                if "task_status_uuid" in body:
                    task["status"] = dict(self._status_by_uuid(body["task_status_uuid"]))
                task["updated_at"] = plannr_now()
                return JSONResponse(dict(task))

        return app

    def _status_by_uuid(self, status_uuid: str) -> dict[str, Any]:
        return next(s for s in self.statuses.values() if s["uuid"] == status_uuid)

    def _check(self, body: dict[str, Any], creating: bool) -> tuple[str, str] | None:
        if creating or "name" in body:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                return "name", "The name field is required."
        if body.get("priority") is not None and body["priority"] not in PRIORITIES:
            return "priority", "The selected priority is invalid."
        if body.get("due_at") is not None:
            try:
                datetime.strptime(str(body["due_at"]), STAMP)
            except ValueError:
                return "due_at", "The due at does not match the format Y-m-d H:i:s."
        if body.get("taskable_type") is not None and body["taskable_type"] not in TASKABLE_TYPES:
            return "taskable_type", "The selected taskable type is invalid."
        if bool(body.get("taskable_type")) != bool(body.get("taskable_uuid")):
            return "taskable_uuid", "The taskable type and taskable uuid go together."
        if body.get("task_status_uuid") is not None and body["task_status_uuid"] not in {
            s["uuid"] for s in self.statuses.values()
        }:
            return "task_status_uuid", "The selected task status uuid is invalid."
        known = {p["uuid"] for p in self.people.values()} | {self.account_uuid}
        for index, who in enumerate(body.get("assigned_to_uuids") or []):
            if who not in known:
                return f"assigned_to_uuids.{index}", "The selected assigned to uuid is invalid."
        for index, entry in enumerate(body.get("custom_fields") or []):
            if not isinstance(entry, dict) or any(k not in self.custom_fields for k in entry):
                return f"custom_fields.{index}", "Unknown custom field."
        return None

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        by_uuid = {p["uuid"]: p for p in self.people.values()}
        status = (
            self._status_by_uuid(body["task_status_uuid"])
            if body.get("task_status_uuid")
            else self.statuses["Incomplete"]
        )
        custom = [
            {
                "name": key.replace("_", " ").capitalize(),
                "type": "string",
                "uuid": str(uuid.uuid4()),
                "value": value,
                "reference": key,
                "is_required": False,
            }
            for entry in body.get("custom_fields") or []
            for key, value in entry.items()
        ]
        task = {
            "uuid": str(uuid.uuid4()),
            "created_at": plannr_now(),
            "updated_at": plannr_now(),
            "name": body["name"],
            "description": body.get("description") or "",
            "priority": body.get("priority") or "medium",
            "position": len(self.tasks) + 1,
            "due_at": body.get("due_at"),
            "status": dict(status),
            "taskable_type": body.get("taskable_type"),
            "taskable": dict(self.plan) if body.get("taskable_uuid") else None,
            "author": dict(self.automation),
            "assigned_to": [
                by_uuid[u] for u in body.get("assigned_to_uuids") or [] if u in by_uuid
            ],
            "completed_at": None,
            "completed_by": None,
            "custom_fields": custom,
            "parent_task_uuid": body.get("parent_task_uuid"),
            "group_uuids": list(body.get("group_uuids") or []),
        }
        with self._lock:
            self.tasks[task["uuid"]] = task
        return dict(task)

    def start(self) -> PlannrStandIn:
        self.served = Served(self.app()).start()
        return self

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()
