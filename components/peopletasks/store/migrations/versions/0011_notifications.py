"""the service's notifications: a mail outbox, reminders, escalation, delegation

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00.000000

Tasks gain what the service does while they wait (`notify`, `reminders`,
`escalation`, their schedule, reassignments and standing delegation); two tables
hold the mail outbox (messages and their attempts) and one the standing
delegations. Adding nullable columns (or ones with a constant default) is a plain
ALTER TABLE on both stores: existing tasks are not rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import peopletasks.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = peopletasks.store.types.UTCDateTime(timezone=True)
_REMINDER = sa.text("status = 'pending' AND next_reminder_at IS NOT NULL")
_ESCALATION = sa.text("status = 'pending' AND escalate_at IS NOT NULL")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("notify", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("reminders", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("escalation", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("next_reminder_at", _WHEN, nullable=True))
    op.add_column(
        "tasks", sa.Column("reminders_sent", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("tasks", sa.Column("escalate_at", _WHEN, nullable=True))
    op.add_column("tasks", sa.Column("escalated_at", _WHEN, nullable=True))
    op.add_column("tasks", sa.Column("delegated_from", sa.String(length=320), nullable=True))
    op.add_column("tasks", sa.Column("reassignments", sa.JSON(), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("decided_by_system", sa.Boolean(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_tasks_pending_reminder",
        "tasks",
        ["next_reminder_at"],
        unique=False,
        sqlite_where=_REMINDER,
        postgresql_where=_REMINDER,
    )
    op.create_index(
        "ix_tasks_pending_escalation",
        "tasks",
        ["escalate_at"],
        unique=False,
        sqlite_where=_ESCALATION,
        postgresql_where=_ESCALATION,
    )

    op.create_table(
        "mail_messages",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=24), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("task_seq", _PK, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("sequence", sa.Integer(), server_default="0", nullable=False),
        sa.Column("context", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _WHEN, nullable=False),
        sa.Column("claimed_until", _WHEN, nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_mail_messages_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["task_seq"],
            ["tasks.seq"],
            name=op.f("fk_mail_messages_task_seq_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_messages")),
        sa.UniqueConstraint("public_id", name=op.f("uq_mail_messages_public_id")),
    )
    op.create_index("ix_mail_messages_due", "mail_messages", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_mail_messages_task_seq"), "mail_messages", ["task_seq"])

    op.create_table(
        "mail_attempts",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("message_id", _PK, nullable=False),
        sa.Column("attempted_at", _WHEN, nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["mail_messages.id"],
            name=op.f("fk_mail_attempts_message_id_mail_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_attempts")),
    )
    op.create_index(op.f("ix_mail_attempts_message_id"), "mail_attempts", ["message_id"])

    op.create_table(
        "delegations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("from_email", sa.String(length=320), nullable=False),
        sa.Column("to_email", sa.String(length=320), nullable=False),
        sa.Column("starts_at", _WHEN, nullable=False),
        sa.Column("ends_at", _WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_delegations_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delegations")),
        sa.UniqueConstraint("org_id", "from_email", name="uq_delegations_org_from"),
    )


def downgrade() -> None:
    op.drop_table("delegations")
    op.drop_index(op.f("ix_mail_attempts_message_id"), table_name="mail_attempts")
    op.drop_table("mail_attempts")
    op.drop_index(op.f("ix_mail_messages_task_seq"), table_name="mail_messages")
    op.drop_index("ix_mail_messages_due", table_name="mail_messages")
    op.drop_table("mail_messages")
    op.drop_index("ix_tasks_pending_escalation", table_name="tasks")
    op.drop_index("ix_tasks_pending_reminder", table_name="tasks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        for column in (
            "decided_by_system",
            "reassignments",
            "delegated_from",
            "escalated_at",
            "escalate_at",
            "reminders_sent",
            "next_reminder_at",
            "escalation",
            "reminders",
            "notify",
        ):
            batch_op.drop_column(column)
