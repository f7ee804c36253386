"""The migrations build exactly the schema the code expects, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from peopletasks.domain import Domain
from peopletasks.store import migrate
from peopletasks.store.tables import metadata


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_tables(domain: Domain, database_url: str) -> None:
    async with domain.db.read() as conn:
        assert await conn.run_sync(_diff) == []
    migrate(database_url)  # a second run is a no-op
    async with domain.db.read() as conn:
        assert await conn.run_sync(_diff) == []
