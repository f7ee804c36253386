"""addresses as given: a task's approver and requester shown as the caller wrote them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 12:00:00.000000

Appmixer keeps e-mail addresses as given; we kept them lower-cased. `approver` and
`requester` stay the lower-cased keys (every comparison, filter, index, secret and
link reads them); `approver_given` / `requester_given` hold the address as given
where its case differs, and are null otherwise (so existing tasks show as before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("requester_given", sa.String(320), nullable=True))
    op.add_column("tasks", sa.Column("approver_given", sa.String(320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("approver_given")
        batch.drop_column("requester_given")
