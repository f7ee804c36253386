"""several approvers, custom responses and forms

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 14:00:00.000000

A task may have several approvers (`tasks.approvers`: each one's state, in order,
on the row like everything its view shows) with a decision rule (`decision_rule`:
any | all | quorum | sequential, and `quorum`), custom responses (`options`), a form
the approver fills (`form`), and whether its requester may approve it
(`allow_self_approval`). The response that decided it: `option`, `decision_data`.

`task_approvers` (unused until now) becomes the index of a multi-approver task's
approvers, so that a person's list finds the tasks they approve second or third:
the columns that would restate the row's state go, an index by e-mail comes.
Single-approver tasks keep `tasks.approver` alone: nothing is written for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import peopletasks.store.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("quorum", sa.Integer(), nullable=True))
    op.add_column("tasks", sa.Column("approvers", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("options", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("form", sa.JSON(), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("allow_self_approval", sa.Boolean(), nullable=False, server_default="0"),
    )
    # A requester may no longer approve their own request unless the task says so; the
    # tasks that already have them as approver stay decidable.
    op.execute(
        sa.text(
            "UPDATE tasks SET allow_self_approval = :yes WHERE requester = approver"
        ).bindparams(sa.bindparam("yes", True, type_=sa.Boolean()))
    )
    op.add_column("tasks", sa.Column("option", sa.String(64), nullable=True))
    op.add_column("tasks", sa.Column("decision_data", sa.JSON(), nullable=True))
    with op.batch_alter_table("task_approvers") as batch:
        batch.drop_column("status")
        batch.drop_column("decided_at")
        batch.drop_column("comment")
    op.create_index("ix_task_approvers_email", "task_approvers", ["email", "task_seq"])


def downgrade() -> None:
    op.drop_index("ix_task_approvers_email", table_name="task_approvers")
    with op.batch_alter_table("task_approvers") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="pending")
        )
        batch.add_column(
            sa.Column(
                "decided_at", peopletasks.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch.add_column(sa.Column("comment", sa.Text(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        for name in (
            "decision_data",
            "option",
            "allow_self_approval",
            "form",
            "options",
            "approvers",
            "quorum",
        ):
            batch.drop_column(name)
