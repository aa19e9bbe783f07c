"""A private PostgreSQL server, for the tests and benchmarks that kill an instance's database.

The shared server (127.0.0.1:5432) must never be touched, so each of these has its own data
directory (initdb into a temporary directory), its own port and its own socket directory. It
runs as the `postgres` OS user when started as root (PostgreSQL refuses to run as root). The
postmaster is started directly as a child of this process, in a session of its own, rather than
through `pg_ctl` or `runuser`: so that `kill()` reaches the postmaster and every backend (one
process group) and reaps it. A killed postmaster left unreaped would stay a zombie whose pid,
alive to kill(pid, 0), makes the restart refuse the data directory's lock file.

fsync stays on: what the tests check is durability. A restart reuses the port and the data
directory, so it is crash recovery after `kill()`, as on a real server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shadowline.harness.processes import HarnessError, free_port

BIN = Path(
    os.environ.get("SHADOWLINE_TEST_POSTGRES_BIN")
    or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), Path("/"))
)
OS_USER = "postgres"  # who runs the server when this process is root


def postgres_problem() -> str | None:
    """Why a private server cannot run here, or None."""
    missing = [b for b in ("initdb", "postgres", "psql") if not (BIN / b).exists()]
    if missing:
        return f"no {', '.join(missing)} in {BIN} (set SHADOWLINE_TEST_POSTGRES_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL"
    return None


def _server_user() -> str | None:
    """Who runs the server's commands: the `postgres` OS user when this process is root."""
    return OS_USER if os.geteuid() == 0 else None


class PostgresServer:
    """One PostgreSQL server in `base`: start, kill -9, start again (crash recovery), stop."""

    def __init__(self, base: Path) -> None:
        """`base`: an empty directory the server's OS user can reach (a test's tmp_path is
        not: its parents are root's, mode 0700; `private_postgres` makes one under /tmp)."""
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.log = base / "postgres.log"
        self._server: subprocess.Popen[bytes] | None = None
        self._initdb()

    def _initdb(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, OS_USER, OS_USER)
        self._run(
            BIN / "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        )  # fmt: skip

    def _run(self, *command: str | Path, timeout: float = 60) -> str:
        try:
            done = subprocess.run(
                [str(c) for c in command],
                capture_output=True,
                timeout=timeout,
                check=False,
                cwd=self.base,
                user=_server_user(),
                group=_server_user(),
            )
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{Path(command[0]).name}: no answer in {timeout}s") from None
        if done.returncode != 0:
            said = (done.stdout + done.stderr).decode(errors="replace")
            raise HarnessError(f"{Path(command[0]).name} failed ({done.returncode}): {said}")
        return done.stdout.decode(errors="replace")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (also its process group's), None when it is not running."""
        return self._server.pid if self._server is not None and self.running else None

    def start(self, timeout: float = 60) -> None:
        assert not self.running, "already running"
        with self.log.open("ab") as out:
            self._server = subprocess.Popen(
                [
                    str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.base}",
                    "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=60",
                ],
                stdout=out,
                stderr=out,
                cwd=self.base,
                start_new_session=True,  # one process group: kill() ends the backends too
                user=_server_user(),
                group=_server_user(),
            )  # fmt: skip
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._server is not None
            if self._server.poll() is not None:
                raise HarnessError(f"PostgreSQL exited:\n{self.log.read_text()[-3000:]}")
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"PostgreSQL not up after {timeout}s (log: {self.log})")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 of the postmaster and every backend, at once; reaped before this returns."""
        server = self._server
        assert server is not None and server.poll() is None, "not running"
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

    def stop(self, timeout: float = 30) -> None:
        """A fast shutdown (SIGINT: sessions ended, a checkpoint); SIGKILL after `timeout`."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # unreaped, so the group id is still ours
            server.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql over the server's socket; its output (tuples only)."""
        return self._run(
            BIN / "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.base), "-p", str(self.port), "-U", "postgres", "-d", database,
            "-c", statement,
        ).strip()  # fmt: skip

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database (the instance migrates it when it starts); its URL."""
        name = name or f"sl_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def private_postgres(base: Path | None = None) -> Iterator[PostgresServer]:
    """A started private server, stopped and removed afterwards (its directory with it)."""
    base = base or Path(tempfile.mkdtemp(prefix="sl-pg-"))
    server = PostgresServer(base)
    try:
        server.start()
        yield server
    finally:
        server.remove()
