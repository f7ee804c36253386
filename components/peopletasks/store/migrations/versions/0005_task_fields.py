"""task fields: assignees, mappings, status history and notes count on the task row

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:30:00.000000

Existing tasks get their `status_history` from `task_history` (the rows every
status change has written since 0001), so their views show it at once.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assignees", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("mappings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("status_history", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("notes_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            "ix_tasks_org_connected", ["org_id", "connected_id", "connected_type"], unique=False
        )
        batch_op.create_index("ix_tasks_parent_id", ["parent_id"], unique=False)

    with op.batch_alter_table("task_assignees", schema=None) as batch_op:
        batch_op.create_index("ix_task_assignees_entity", ["entity_id", "task_seq"], unique=False)

    _backfill_status_history()


def _format(value: Any) -> str | None:
    """As peopletasks.timeutil.format_datetime (kept here: a migration must not change)."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    spec = "milliseconds" if when.microsecond else "seconds"
    return str(when.replace(tzinfo=None).isoformat(timespec=spec)) + "Z"


def _backfill_status_history() -> None:
    bind = op.get_bind()
    history = sa.table(
        "task_history",
        sa.column("id", sa.BigInteger),
        sa.column("task_seq", sa.BigInteger),
        sa.column("from_status", sa.String),
        sa.column("to_status", sa.String),
        sa.column("changed_by", sa.String),
        sa.column("changed_at", sa.DateTime),
    )
    tasks = sa.table("tasks", sa.column("seq", sa.BigInteger), sa.column("status_history", sa.JSON))
    rows = bind.execute(
        sa.select(
            history.c.task_seq,
            history.c.from_status,
            history.c.to_status,
            history.c.changed_by,
            history.c.changed_at,
        ).order_by(history.c.task_seq, history.c.id)
    )
    entries: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        entries.setdefault(row.task_seq, []).append(
            {
                "from": row.from_status,
                "to": row.to_status,
                "changedAt": _format(row.changed_at),
                "changedBy": row.changed_by,
            }
        )
    update = (
        tasks.update()
        .where(tasks.c.seq == sa.bindparam("b_seq"))
        .values(status_history=sa.bindparam("b_history", type_=sa.JSON))
    )
    batch = [{"b_seq": seq, "b_history": items} for seq, items in entries.items()]
    for start in range(0, len(batch), _BATCH):
        bind.execute(update, batch[start : start + _BATCH])


def downgrade() -> None:
    with op.batch_alter_table("task_assignees", schema=None) as batch_op:
        batch_op.drop_index("ix_task_assignees_entity")

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_parent_id")
        batch_op.drop_index("ix_tasks_org_connected")
        batch_op.drop_column("notes_count")
        batch_op.drop_column("status_history")
        batch_op.drop_column("mappings")
        batch_op.drop_column("assignees")
