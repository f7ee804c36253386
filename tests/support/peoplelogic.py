"""A stand-in for Peoplelogic's task API, written from peoplelogic-tasks-api.txt alone.

```
POST  /api/v1/entity/{entity}/task         201 the task | 400 | 401 | 403 | 404 (no Entity)
PATCH /api/v1/entity/{entity}/task/{task}  200 the task | 400 | 401 | 403 | 404
GET   /api/v1/task/{task}                  200 the task | 401 | 403 | 404
```

Auth: `Authorization: Bearer <JWT>`; a known read-only token gets 403 on writes.
Body fields as documented (name required; description, dueDate a date, order an
integer, orderGroup a uuid) and, in the shapes of the task object, `assignees`,
`notes` and `mappings`. The test decides a task as a person would in Peoplelogic
(`decide`: set `status.current`, `changedBy`, and maybe a note), and can make the
next create answer 429 (with `Retry-After`) or 500 once.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.standin import Served, now_iso

ORGANIZATION = "9b0c4b32-6a53-4a56-8d0f-3f8f5e1f2a10"
AUTOMATION = "5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # the user the JWT belongs to


@dataclass
class Failure:
    status: int
    retry_after: str | None = None


@dataclass
class PeoplelogicStandIn:
    token: str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhdXRvbWF0aW9uIn0.c2lnbmF0dXJl"
    read_only_token: str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkZXIifQ.c2lnbmF0dXJl"
    entities: set[str] = field(default_factory=lambda: {str(uuid.uuid4())})
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_entity: dict[str, str] = field(default_factory=dict)
    create_attempts: list[float] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    served: Served | None = None

    @property
    def entity(self) -> str:
        return next(iter(self.entities))

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    # -- what the test does -------------------------------------------------

    def fail_next_create(self, status: int = 429, retry_after: str | None = "1") -> None:
        with self._lock:
            self._failures.append(Failure(status, retry_after))

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(t) for t in self.tasks.values() if t["name"] == name]

    def decide(self, task_id: str, current: str, *, by: str, note: str | None = None) -> None:
        """A person sets the task's status in Peoplelogic (and maybe writes a note)."""
        with self._lock:
            task = self.tasks[task_id]
            task["status"] = {"current": current, "changedAt": now_iso(), "changedBy": by}
            if note is not None:
                task["notes"].append(
                    {"id": str(uuid.uuid4()), "note": note, "author": by, "createdAt": now_iso()}
                )

    # -- the API -------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI()

        def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
            return JSONResponse({"message": message}, status_code=status, headers=headers)

        def auth(request: Request, write: bool) -> Any:
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            if token not in (self.token, self.read_only_token):
                return error(401, "Unauthorized - missing or invalid JWT.")
            if write and token == self.read_only_token:
                return error(403, "Forbidden - insufficient permissions.")
            return None

        async def payload(request: Request) -> tuple[dict[str, Any] | None, Any]:
            try:
                body = await request.json()
            except ValueError:
                return None, error(400, "Bad Request - invalid request payload: not JSON.")
            if not isinstance(body, dict):
                return None, error(400, "Bad Request - invalid request payload: not an object.")
            problem = _check(body)
            if problem is not None:
                return None, error(400, f"Bad Request - invalid request payload: {problem}")
            return body, None

        @app.post("/api/v1/entity/{entity}/task")
        async def create(entity: str, request: Request) -> Any:
            import time

            with self._lock:
                self.create_attempts.append(time.monotonic())
                failure = self._failures.pop(0) if self._failures else None
            refused = auth(request, write=True)
            if refused is not None:
                return refused
            if entity not in self.entities:
                return error(404, "Not Found - no Entity with that ID.")
            body, refused = await payload(request)
            if refused is not None:
                return refused
            assert body is not None
            if failure is not None:
                headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
                if failure.status >= 500:  # it failed after doing the work
                    self._store(entity, body)
                return error(
                    failure.status,
                    "Too Many Requests" if failure.status == 429 else "Internal Server Error",
                    headers,
                )
            return JSONResponse(self._store(entity, body), status_code=201)

        @app.patch("/api/v1/entity/{entity}/task/{task}")
        async def update(entity: str, task: str, request: Request) -> Any:
            refused = auth(request, write=True)
            if refused is not None:
                return refused
            if entity not in self.entities:
                return error(404, "Not Found - no Entity with that ID.")
            body, refused = await payload(request)
            if refused is not None:
                return refused
            assert body is not None
            with self._lock:
                if self.task_entity.get(task) != entity:
                    return error(404, "Not Found - no Task with that ID.")
                current = self.tasks[task]
                for key in ("name", "description", "dueDate", "order", "orderGroup", "assignees"):
                    if key in body:
                        current[key] = body[key]
                if "mappings" in body:
                    current["mappings"] = list(body["mappings"])
                if "notes" in body:
                    current["notes"] = [_note(n) for n in body["notes"]]
                return JSONResponse(dict(current))

        @app.get("/api/v1/task/{task}")
        async def read(task: str, request: Request) -> Any:
            refused = auth(request, write=False)
            if refused is not None:
                return refused
            with self._lock:
                if task not in self.tasks:
                    return error(404, "Not Found - no Task with that ID.")
                return JSONResponse(dict(self.tasks[task]))

        return app

    def _store(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        task_id = str(uuid.uuid4())
        task = {
            "id": task_id,
            "name": body["name"],
            "active": True,
            "status": {"current": "open", "changedAt": now_iso(), "changedBy": AUTOMATION},
            "created": {"createdAt": now_iso(), "createdBy": AUTOMATION},
            "assignees": list(body.get("assignees") or []),
            "organization": ORGANIZATION,
            "description": body.get("description") or "",
            "dueDate": body.get("dueDate"),
            "connectedTo": {"entityId": entity, "type": "okr", "organization": ORGANIZATION},
            "notes": [_note(n) for n in body.get("notes") or []],
            "order": body.get("order"),
            "orderGroup": body.get("orderGroup"),
            "mappings": list(body.get("mappings") or []),
        }
        with self._lock:
            self.tasks[task_id] = task
            self.task_entity[task_id] = entity
        return dict(task)

    def start(self) -> PeoplelogicStandIn:
        self.served = Served(self.app()).start()
        return self

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()


def _note(note: dict[str, Any]) -> dict[str, Any]:
    if note.get("id"):
        return dict(note)
    return {
        "id": str(uuid.uuid4()),
        "note": note["note"],
        "author": AUTOMATION,
        "createdAt": now_iso(),
    }


def _check(body: dict[str, Any]) -> str | None:
    """The first problem with a task body (the documented field types), or None."""
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        return "name is required"
    if "description" in body and not isinstance(body["description"], str):
        return "description must be a string"
    if body.get("dueDate") is not None:
        try:
            date.fromisoformat(str(body["dueDate"]))
        except ValueError:
            return "dueDate must be a date (YYYY-MM-DD)"
    if body.get("order") is not None and not isinstance(body["order"], int):
        return "order must be an integer"
    if body.get("orderGroup") is not None:
        try:
            uuid.UUID(str(body["orderGroup"]))
        except ValueError:
            return "orderGroup must be a uuid"
    for note in body.get("notes") or []:
        if not isinstance(note, dict) or not isinstance(note.get("note"), str):
            return "notes: each note needs a note (text)"
    for assignee in body.get("assignees") or []:
        if not isinstance(assignee, dict) or not assignee.get("entityId"):
            return "assignees: each needs an entityId"
    return None
