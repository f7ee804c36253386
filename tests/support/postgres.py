"""A throw-away PostgreSQL cluster for tests and benchmarks.

The cluster lives in a fresh temporary directory, listens on 127.0.0.1 only, on a
free TCP port, with trust authentication and settings that trade durability for
speed (``fsync=off`` and friends). Nothing outside the temporary directory is
touched: the unix socket goes there too, not to /var/run/postgresql.

PostgreSQL refuses to run as root, so when this process is root the server
binaries run as the ``postgres`` OS user (the Debian packages create it).

Manual use (prints the URL, runs until Ctrl-C or SIGTERM)::

    python -m tests.support.postgres [--database NAME]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = [
    "BINDIR_ENV",
    "PostgresCluster",
    "PostgresError",
    "find_pg_bindir",
    "postgres_available",
]

BINDIR_ENV = "PEOPLETASKS_PG_BINDIR"
"""Environment variable naming the directory holding initdb, pg_ctl, postgres, psql."""

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "psql")
_OS_USER = "postgres"
_SUPERUSER = "postgres"
_HOST = "127.0.0.1"
_START_TIMEOUT = 30.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}


class PostgresError(RuntimeError):
    """The throw-away cluster could not be set up, started or used."""


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin; "15" > "9.6" numerically, not as text.
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts)


def find_pg_bindir() -> Path | None:
    """Directory with the PostgreSQL server binaries, or None when not installed.

    Order: env ``PEOPLETASKS_PG_BINDIR``; ``pg_config --bindir`` if it holds initdb;
    the highest ``/usr/lib/postgresql/*/bin`` holding initdb (Debian layout).
    """
    configured = os.environ.get(BINDIR_ENV, "").strip()
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and (Path(out) / "initdb").is_file():
            return Path(out)
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if candidates:
        return max(candidates, key=_version_key)
    return None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def postgres_available() -> bool:
    """Whether a `PostgresCluster` can be started on this machine."""
    bindir = find_pg_bindir()
    if bindir is None:
        return False
    if not all((bindir / name).is_file() for name in _REQUIRED_BINARIES):
        return False
    if _running_as_root():
        try:
            pwd.getpwnam(_OS_USER)
        except KeyError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory.

    ``start()`` / ``stop()``, or use as a context manager. After start, ``url`` is
    ``postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres``.
    """

    def __init__(
        self,
        bindir: Path | None = None,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """`bindir` defaults to `find_pg_bindir()`; `settings` override/extend the
        fast test-only server settings (passed as ``-c name=value``)."""
        self._bindir = bindir
        self._settings = {**_FAST_SETTINGS, **(settings or {})}
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self._started = False

    # -- public attributes -------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or not self._started:
            raise PostgresError("the cluster is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.database_url("postgres")

    @property
    def datadir(self) -> Path:
        if self._tmpdir is None:
            raise PostgresError("the cluster has no data directory; call start() first")
        return self._tmpdir / "data"

    @property
    def logfile(self) -> Path:
        if self._tmpdir is None:
            raise PostgresError("the cluster has no log file; call start() first")
        return self._tmpdir / "postgres.log"

    @property
    def running(self) -> bool:
        return self._started

    def database_url(self, name: str) -> str:
        """SQLAlchemy (asyncpg) URL of database `name` on this cluster."""
        return f"postgresql+asyncpg://{_SUPERUSER}@{_HOST}:{self.port}/{name}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise PostgresError("the cluster is already running")
        bindir = self._bindir or find_pg_bindir()
        if bindir is None:
            raise PostgresError(
                "PostgreSQL binaries not found: install postgresql (Debian: "
                f"apt-get install postgresql) or set {BINDIR_ENV}"
            )
        missing = [n for n in _REQUIRED_BINARIES if not (bindir / n).is_file()]
        if missing:
            raise PostgresError(f"{bindir} lacks {', '.join(missing)}")
        self._bindir = bindir
        tmpdir = Path(tempfile.mkdtemp(prefix="peopletasks-pg-"))
        self._tmpdir = tmpdir
        try:
            if _running_as_root():
                try:
                    user = pwd.getpwnam(_OS_USER)
                except KeyError:
                    raise PostgresError(
                        f"running as root, but there is no {_OS_USER!r} OS user to run "
                        "PostgreSQL as"
                    ) from None
                os.chown(tmpdir, user.pw_uid, user.pw_gid)
            self._initdb()
            deadline = time.monotonic() + _START_TIMEOUT
            for attempt in range(3):
                self._port = _free_port()
                try:
                    self._pg_ctl_start(deadline)
                    break
                except PostgresError:
                    # Someone else grabbed the port between bind-check and start: retry.
                    if attempt == 2 or "already in use" not in _tail(self.logfile, 10):
                        raise
            self._started = True
            atexit.register(self.stop)
            self._wait_for_tcp(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (``-m immediate``) and delete its directory. Idempotent."""
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        tmpdir, self._tmpdir = self._tmpdir, None
        self._started = False
        if tmpdir is None:
            return
        datadir = tmpdir / "data"
        pid = _read_pid(datadir / "postmaster.pid")
        if self._bindir is not None and pid is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run_server_tool(
                    [
                        *(str(self._bindir / "pg_ctl"), "stop", "-D", str(datadir)),
                        *("-m", "immediate", "-w", "-t", "30"),
                    ],
                    cwd=tmpdir,
                    timeout=40,
                )
            _ensure_gone(pid)
        shutil.rmtree(tmpdir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` and return its SQLAlchemy (asyncpg) URL.

        Synchronous (runs psql over TCP), so it may be called from inside a
        running event loop, e.g. an async fixture; it blocks that loop briefly.
        """
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain SQL identifier (max 63 chars): {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql (ON_ERROR_STOP, unaligned tuples-only) and return stdout."""
        assert self._bindir is not None
        cmd = [
            str(self._bindir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            _HOST,
            "-p",
            str(self.port),
            "-U",
            _SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ]
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
        for var in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGSSLMODE"):
            env.pop(var, None)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=60, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(f"psql timed out running {sql!r}") from exc
        if proc.returncode != 0:
            raise PostgresError(
                f"psql failed ({proc.returncode}) running {sql!r}: {proc.stderr.strip()}"
            )
        return proc.stdout

    # -- internals ---------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        for var in ("PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGDATABASE", "PGOPTIONS"):
            env.pop(var, None)
        return env

    def _run_server_tool(
        self, cmd: Sequence[str], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the postgres OS user when we are root."""
        kwargs: dict[str, Any] = {}
        if _running_as_root():
            kwargs = {"user": _OS_USER, "group": pwd.getpwnam(_OS_USER).pw_gid, "extra_groups": []}
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
            **kwargs,
        )

    def _initdb(self) -> None:
        assert self._bindir is not None
        assert self._tmpdir is not None
        cmd = [
            str(self._bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            _SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            proc = self._run_server_tool(cmd, cwd=self._tmpdir, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise PostgresError("initdb timed out") from exc
        if proc.returncode != 0:
            raise PostgresError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        # Trust on loopback TCP and the private socket only; nothing else.
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(
            f"# throw-away test cluster\nlocal all all trust\nhost all all {_HOST}/32 trust\n"
        )
        if _running_as_root():
            user = pwd.getpwnam(_OS_USER)
            os.chown(hba, user.pw_uid, user.pw_gid)

    def _server_options(self) -> str:
        assert self._tmpdir is not None
        assert self._port is not None
        opts = [
            f"-p {self._port}",
            f"-c listen_addresses={_HOST}",
            f"-c unix_socket_directories={self._tmpdir}",
        ]
        opts += [f"-c {k}={v}" for k, v in self._settings.items()]
        return " ".join(opts)

    def _pg_ctl_start(self, deadline: float) -> None:
        assert self._bindir is not None
        assert self._tmpdir is not None
        wait = max(1, int(deadline - time.monotonic()))
        cmd = [
            str(self._bindir / "pg_ctl"),
            "-w",
            "-t",
            str(wait),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "start",
            "-o",
            self._server_options(),
        ]
        try:
            proc = self._run_server_tool(cmd, cwd=self._tmpdir, timeout=wait + 10)
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(
                f"pg_ctl start timed out; log tail:\n{_tail(self.logfile)}"
            ) from exc
        if proc.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"log tail ({self.logfile}):\n{_tail(self.logfile)}"
            )

    def _wait_for_tcp(self, deadline: float) -> None:
        assert self._port is not None
        last: OSError | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((_HOST, self._port), timeout=1):
                    return
            except OSError as exc:
                last = exc
                time.sleep(0.05)
        raise PostgresError(
            f"PostgreSQL did not accept TCP connections on {_HOST}:{self._port} within "
            f"{_START_TIMEOUT:.0f}s ({last}); log tail:\n{_tail(self.logfile)}"
        )


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) STATE ..."; comm may contain spaces or parentheses.
    return stat[stat.rindex(")") + 2 :].startswith(("Z", "X"))


def _ensure_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for the postmaster to exit; escalate to SIGQUIT, then SIGKILL."""
    for sig in (None, signal.SIGQUIT, signal.SIGKILL):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _gone(pid):
                return
            time.sleep(0.02)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.postgres",
        description="Run a throw-away PostgreSQL cluster until Ctrl-C / SIGTERM.",
    )
    parser.add_argument("--database", help="also create this database; print its URL")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with PostgresCluster() as cluster:
        url = cluster.create_database(args.database) if args.database else cluster.url
        print(url, flush=True)
        print(
            f"data: {cluster.datadir}  log: {cluster.logfile}  (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
