"""less written per task: status history on the row only, sparse indexes partial

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00.000000

Since 0005 every status change has been written twice: appended to the row's
`status_history` (in the UPDATE that changes the status) and as a `task_history`
row. The row's copy is complete (0005 filled it for older tasks) and is what both
the task views and `GET /tasks/{id}/history` read now (the decision's comment is
the row's `comment`), so the table goes: one INSERT fewer for every create,
decision and expiry. Downgrading rebuilds the table from the rows' histories.

The indexes over the request key, the connected entity and the parent held an
entry for every task, though most tasks have none of them; they now hold only the
tasks that have one (what their lookups ask for): three index entries fewer to
write per task.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import peopletasks.store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000
_DECIDED = ("approved", "rejected")


#: index -> (columns, unique, the column whose tasks it holds)
_SPARSE = {
    "uq_tasks_org_request_key": (["org_id", "request_key"], True, "request_key"),
    "ix_tasks_org_connected": (["org_id", "connected_id", "connected_type"], False, "connected_id"),
    "ix_tasks_parent_id": (["parent_id"], False, "parent_id"),
}


def upgrade() -> None:
    with op.batch_alter_table("task_history", schema=None) as batch_op:
        batch_op.drop_index("ix_task_history_task_seq")
    op.drop_table("task_history")
    for name, (columns, unique, column) in _SPARSE.items():
        op.drop_index(name, table_name="tasks")
        only = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "tasks", columns, unique=unique, sqlite_where=only, postgresql_where=only
        )


def downgrade() -> None:
    for name, (columns, unique, _) in _SPARSE.items():
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns, unique=unique)
    history = op.create_table(
        "task_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=320), nullable=True),
        sa.Column("changed_at", peopletasks.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_seq"],
            ["tasks.seq"],
            name=op.f("fk_task_history_task_seq_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_history")),
    )
    with op.batch_alter_table("task_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_history_task_seq"), ["task_seq"], unique=False)
    assert history is not None
    _rebuild(history)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _rebuild(history: sa.Table) -> None:
    bind = op.get_bind()
    tasks = sa.table(
        "tasks",
        sa.column("seq", sa.BigInteger),
        sa.column("comment", sa.Text),
        sa.column("status_history", sa.JSON),
    )
    rows: list[dict[str, Any]] = []
    for task in bind.execute(sa.select(tasks.c.seq, tasks.c.comment, tasks.c.status_history)).all():
        for entry in task.status_history or ():
            rows.append(
                {
                    "task_seq": task.seq,
                    "from_status": entry["from"],
                    "to_status": entry["to"],
                    "changed_by": entry["changedBy"],
                    "changed_at": _parse(entry["changedAt"]),
                    "comment": task.comment if entry["to"] in _DECIDED else None,
                }
            )
            if len(rows) >= _BATCH:
                bind.execute(history.insert(), rows)
                rows = []
    if rows:
        bind.execute(history.insert(), rows)
