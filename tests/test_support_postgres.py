"""The throw-away PostgreSQL cluster used by the tests and benchmarks works."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from tests.support.postgres import PostgresCluster, find_pg_bindir

IN_CI = os.environ.get("CI", "").lower() == "true"


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (zombies awaiting their reaper do not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return not stat[stat.rindex(")") + 2 :].startswith(("Z", "X"))


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


async def _select_one(dsn: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval("select 1")
    finally:
        await conn.close()


def test_cluster_starts_creates_database_and_stops() -> None:
    if find_pg_bindir() is None:
        if IN_CI:
            pytest.fail("PostgreSQL is not installed, and CI must test on it")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")

    cluster = PostgresCluster()
    cluster.start()
    try:
        assert cluster.url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
        assert cluster.url.endswith("/postgres")
        pid = int((cluster.datadir / "postmaster.pid").read_text().splitlines()[0])
        tmpdir = cluster.datadir.parent

        url = cluster.create_database("pt_support_check")
        assert url == cluster.url.removesuffix("/postgres") + "/pt_support_check"
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        assert asyncio.run(_select_one(dsn)) == 1
    finally:
        cluster.stop()

    assert not _running(pid), "the postmaster outlived stop()"
    assert _processes_mentioning(str(tmpdir)) == [], "cluster processes outlived stop()"
    assert not tmpdir.exists(), "stop() left the temporary directory behind"
    cluster.stop()  # idempotent
