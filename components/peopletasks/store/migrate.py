"""Apply the Alembic migrations (called by `peopletasks serve` before serving)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

from peopletasks.errors import StoreUnavailable
from peopletasks.store.failures import store_unavailable
from peopletasks.store.preflight import check_store, safe_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`. Safe to call from async code.

    A store that cannot be opened or written (see `preflight.check_store`), or a
    database server that cannot be reached, raises `StoreUnavailable` naming it."""
    check_store(url)
    try:
        _upgrade(alembic_config(url), revision)
    except Exception as error:
        failure = store_unavailable(error, connecting=True)
        if failure is None:
            raise
        raise StoreUnavailable(
            f"cannot migrate the store {safe_url(url)}: {failure.message}", code=failure.code
        ) from error


def _upgrade(config: Config, revision: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # Alembic's env.py runs its own event loop: give it a thread of its own.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(config, revision)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="peopletasks-migrate")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
