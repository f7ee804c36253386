"""trust: admin tokens, and every edit of a task in its change log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 12:00:00.000000

A token now sees the tasks its user created, approves or requests; an admin token
(`token create --admin`) the whole organization: `api_tokens.admin`. Every edit of
a task is recorded on its row (`tasks.change_log`: who, when, which fields, from
and to), beside its status history. Existing tokens stay non-admin.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_tokens", sa.Column("admin", sa.Boolean(), nullable=False, server_default="0")
    )
    op.add_column("tasks", sa.Column("change_log", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("change_log")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("admin")
