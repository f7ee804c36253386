"""Clear failure: when the store cannot take work, callers and operators are told so.

- A full store answers writes 503 `store_full` with a message saying so, `/healthz`
  answers 503 while writes fail, reads go on, and both recover by themselves once
  there is room again. "Full" is made two ways: SQLite's `max_page_count` on the
  service's writer (the file cannot grow: what the writer meets on a full disk,
  anywhere) and, where this machine lets us mount one, a real tmpfs filled to the
  last byte. PostgreSQL's counterpart that a test can make for real: the database
  turned read-only (what an operator or a failover does).
- A store that cannot be opened (corrupt file, folder that cannot be made, read-only
  folder, server that does not answer): `peopletasks migrate` and `serve` print one
  line naming it and why, and exit non-zero.
- `serve --workers N` refuses a SQLite store in one line; PostgreSQL keeps it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from peopletasks.domain import Domain
from peopletasks.store.database import LoopConnection
from tests.conftest import TEST_KEY, Api, error_of, new_database_url, service_on
from tests.support.server import BIN, ServiceProcess, free_port, service_env

#: SQLite's largest page count: the limit as good as none.
NO_LIMIT = 4294967294


class Refused(Exception):
    """Raised at the end of a write block: roll it back (the store is not to blame)."""


async def set_page_limit(domain: Domain, pages: int | None) -> None:
    """PRAGMA max_page_count on the service's writer (None: the current size). A
    connection setting, not part of the transaction: it stays though the block is
    rolled back (so that no write succeeds here, which would hide the failure)."""
    with contextlib.suppress(Refused):
        async with domain.db.write() as conn:
            assert isinstance(conn, LoopConnection)
            raw = conn.sync.connection.dbapi_connection
            if pages is None:
                pages = raw.execute("PRAGMA page_count").fetchone()[0]
            raw.execute(f"PRAGMA max_page_count = {pages}")
            raise Refused


async def create_until_refused(api: Api, attempts: int = 500) -> httpx.Response:
    """Create tasks until one is refused (pages the file had free go first)."""
    body = {
        "title": "t" * 1000,
        "description": "d" * 2000,
        "requester": "r@example.com",
        "approver": "a@example.com",
    }
    for _ in range(attempts):
        response = await api.post("/tasks", json=body)
        if response.status_code != 201:
            return response
    raise AssertionError(f"{attempts} creates and none refused")


async def assert_recovers(api: Api, task_id: str) -> None:
    health = await api.http.get("/healthz")
    assert health.status_code == 200, health.text
    assert (await api.get(f"/tasks/{task_id}")).status_code == 200
    created = await api.create(title="after the disk was cleared")
    assert (await api.get(f"/tasks/{created['id']}")).status_code == 200


async def assert_full(api: Api, task_id: str) -> None:
    refused = await create_until_refused(api)
    assert refused.status_code == 503, refused.text
    error = error_of(refused)
    assert error["code"] == "store_full", error
    assert "full" in error["message"], error
    health = await api.http.get("/healthz")
    assert health.status_code == 503, health.text
    assert error_of(health)["code"] == "store_full"
    # Reads go on.
    seen = await api.get(f"/tasks/{task_id}")
    assert seen.status_code == 200 and seen.json()["status"] == "pending", seen.text


async def test_a_full_sqlite_store_refuses_writes_clearly_and_recovers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_database_url(request, "sqlite", tmp_path)
    async with service_on(url, "lead@example.com") as (domain, api):
        task = await api.create(approver="lead@example.com")
        assert (await api.http.get("/healthz")).status_code == 200
        await set_page_limit(domain, None)
        await assert_full(api, task["id"])
        await set_page_limit(domain, NO_LIMIT)  # room again: no restart, no write first
        await assert_recovers(api, task["id"])
        decided = await api.put(f"/tasks/{task['id']}/approve", json={})
        assert decided.status_code == 200, decided.text


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """A file taking every free byte of `folder`'s file system."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def test_a_real_full_disk_refuses_writes_clearly_and_recovers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with mounted_tmpfs(tmp_path / "disk", "16m") as disk:
        url = new_database_url(request, "sqlite", disk)
        async with service_on(url) as (_domain, api):
            task = await api.create()
            filler = fill(disk)
            await assert_full(api, task["id"])
            filler.unlink()
            await assert_recovers(api, task["id"])


async def test_a_read_only_postgresql_refuses_writes_clearly_and_recovers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_database_url(request, "postgresql", tmp_path)
    cluster: Any = request.getfixturevalue("postgres")
    name = url.rsplit("/", 1)[1]

    def read_only(on: bool) -> None:
        value = "on" if on else "off"
        cluster.psql(f"ALTER DATABASE {name} SET default_transaction_read_only = {value}")
        # Sessions take it when they begin: end the service's (its pool reconnects).
        others = f"datname = '{name}' AND pid <> pg_backend_pid()"
        cluster.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}")  # noqa: S608

    async with service_on(url) as (_domain, api):
        task = await api.create()
        read_only(True)
        refused = await api.post(
            "/tasks", json={"title": "x", "requester": "r@example.com", "approver": "a@b.com"}
        )
        assert refused.status_code == 503, refused.text
        assert error_of(refused)["code"] == "store_unavailable"
        assert "read-only" in error_of(refused)["message"]
        health = await api.http.get("/healthz")
        assert health.status_code == 503, health.text
        assert "read-only" in error_of(health)["message"]
        assert (await api.get(f"/tasks/{task['id']}")).status_code == 200
        read_only(False)
        await assert_recovers(api, task["id"])


# The command line: a store that cannot be opened is one line and a non-zero exit.


def run_cli(*args: str, url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = service_env(url, TEST_KEY)
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


COMMANDS = [("migrate",), ("serve", "--port", "0")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_corrupt_file_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    store = tmp_path / "store.db"
    store.write_bytes(b"this is not a database, whatever its name says\n" * 100)
    done = run_cli(*command, url=f"sqlite+aiosqlite:///{store}")
    assert_one_line(done, str(store), "not a SQLite database")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    store = tmp_path / "taken" / "data" / "store.db"
    done = run_cli(*command, url=f"sqlite+aiosqlite:///{store}")
    assert_one_line(done, str(store), "cannot create its folder")


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """`folder` read-only: by its mode, or (root ignores modes) a read-only bind mount."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], check=False)
    if bound.returncode != 0:
        pytest.skip("root, and cannot bind-mount a folder read-only here")
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(folder)], check=False, capture_output=True
        )
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remounted.stderr!r}")
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_read_only_folder_is_one_line(
    request: pytest.FixtureRequest, tmp_path: Path, command: tuple[str, ...]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    url = new_database_url(request, "sqlite", folder)  # a migrated store in it
    with read_only_folder(folder):
        done = run_cli(*command, url=url)
    assert_one_line(done, str(folder), "not writable")


def test_a_postgresql_server_that_does_not_answer_is_one_line() -> None:
    url = f"postgresql+asyncpg://someone:secret@127.0.0.1:{free_port()}/nothing"
    done = run_cli("migrate", url=url)
    line = assert_one_line(done, "cannot be reached", "someone:***@127.0.0.1")
    assert "secret" not in line


def test_a_postgresql_database_that_does_not_exist_is_one_line(
    request: pytest.FixtureRequest,
) -> None:
    cluster: Any = request.getfixturevalue("postgres")
    done = run_cli("migrate", url=cluster.database_url("no_such_database"))
    assert_one_line(done, "no_such_database", "does not exist")


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    done = run_cli("serve", "--workers", "2", url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    assert_one_line(done, "--workers 2", "SQLite", "one process", "PostgreSQL")
    assert not (tmp_path / "s.db").exists()  # refused before touching anything


def test_serve_keeps_several_workers_on_postgresql(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_database_url(request, "postgresql", tmp_path)
    with ServiceProcess(service_env(url, TEST_KEY), "--workers", "2") as service:
        health = httpx.get(f"{service.url}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["database"] == "postgresql"
