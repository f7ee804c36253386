"""Finding a task for a caller: what they may not read, they are told does not exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from peopletasks.domain.principals import Principal
from peopletasks.domain.rules import may_read
from peopletasks.errors import NotFound
from peopletasks.store import tasks as stored
from peopletasks.store.database import Conn


async def load_task(
    conn: Conn, principal: Principal, task_id: str, *, for_update: bool = False
) -> Row[Any]:
    """The task `task_id` if `principal` may read it, else NotFound; locked until the
    transaction ends when `for_update` (a change reads it so)."""
    row = await stored.task_by_id(conn, task_id, principal.org_id, for_update=for_update)
    if row is None or not may_read(principal, row):
        raise NotFound(f"no task {task_id!r}")
    return row
