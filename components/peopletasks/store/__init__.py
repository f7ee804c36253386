"""Persistence: tables, the database handle and migrations. Knows nothing of its callers."""

from peopletasks.store.database import Database
from peopletasks.store.migrate import migrate

__all__ = ["Database", "migrate"]
