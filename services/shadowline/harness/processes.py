"""Real `shadowline` processes: an instance or a watchdog, started with an environment of its
own, signalled, stopped and started again.

Every start of one process appends to the same log file, so a failure names the log that
explains it. Everything here is synchronous (subprocess, httpx); async callers (the
benchmarks) run the waits in a thread.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import tenacity

T = TypeVar("T")

LOG_TAIL = 3000  # characters of a process's log quoted when it exits unexpectedly


class HarnessError(RuntimeError):
    """Raised when a process exits, or does not reach a state, before the deadline it was given."""


class TimedOut(HarnessError):
    """Raised by `wait_for` when its deadline passed before the awaited state came."""


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it can be bound on 127.0.0.1, else a port the system picks."""
    with socket.socket() as probe:
        if preferred is not None:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    every: float = 0.05,
    *,
    tolerate: tuple[type[Exception], ...] = (),
) -> T:
    """The first truthy value of `predicate`, polled every `every` s; TimedOut after
    `timeout`. An exception of a type in `tolerate` counts as a falsy answer (a process still
    starting); any other reaches the caller at once."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(every),
        retry=tenacity.retry_if_exception_type(tolerate)
        | tenacity.retry_if_result(lambda v: not v),
    )
    try:
        found = retrying(predicate)
    except tenacity.RetryError:
        raise TimedOut(f"timed out after {timeout}s waiting for {what}") from None
    assert found is not None  # retried while falsy
    return found


@dataclass(kw_only=True)
class ShadowlineProcess:
    """`python -m shadowline ARGUMENTS` with `env`, its output appended to `log`."""

    env: dict[str, str]
    log: Path
    interpreter: tuple[str, ...] = ()  # options before `-m shadowline`, e.g. a profiler's
    own_group: bool = False  # a process group of its own: the terminal's Ctrl-C does not reach it
    popen: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)  # the codes `wait` saw, oldest first

    def arguments(self) -> list[str]:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.env.get("SHADOWLINE_INSTANCE") or self.arguments()[0]

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def start(self) -> None:
        command = [sys.executable, *self.interpreter, "-m", "shadowline", *self.arguments()]
        with self.log.open("ab") as out:  # the child holds its own copy of the descriptor
            self.popen = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=out,
                process_group=0 if self.own_group else None,
            )

    def signal(self, signum: int) -> None:
        assert self.popen is not None, f"{self.name} was never started"
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        code = self.popen.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as an operator or a service manager would; SIGKILL after `timeout`.
        The exit code (None: never started); a graceful shutdown ends with 0."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.reap(timeout)

    def reap(self, timeout: float = 30) -> int | None:
        """Wait for an exit already asked for, SIGKILL after `timeout`; the exit code."""
        if self.popen is None:
            return None
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return self.popen.returncode

    def text(self, after: int = 0) -> str:
        """The log from character `after` on ("" before the first start)."""
        if not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[after:]

    def size(self) -> int:
        """The log's length in characters: an offset for `text` and `wait_logged`."""
        return len(self.text())

    def check_running(self) -> None:
        """HarnessError, quoting the log's end, when the process has exited."""
        code = self.returncode
        if self.popen is None or code is not None:
            raise HarnessError(
                f"{self.name} exited with code {code} (log: {self.log}):\n{self.text()[-LOG_TAIL:]}"
            )


@dataclass(kw_only=True)
class InstanceProcess(ShadowlineProcess):
    """`shadowline instance`, reachable at `url`."""

    url: str

    def arguments(self) -> list[str]:
        return ["instance"]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What a client of this instance checks its certificate with: SHADOWLINE_CA_FILE of
        its environment (the same file its own calls trust), else the system's CAs."""
        ca_file = self.env.get("SHADOWLINE_CA_FILE")
        return ssl.create_default_context(cafile=ca_file) if ca_file else True

    def health(self, timeout: float = 0.5) -> dict[str, Any] | None:
        """GET /health, or None while the process is down, paused or starting."""
        try:
            response = httpx.get(f"{self.url}/health", timeout=timeout, verify=self.verify)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        """GET /health once it answers 200; HarnessError if the process exits first."""

        def healthy() -> dict[str, Any] | None:
            self.check_running()
            return self.health(timeout=1)

        return wait_for(healthy, timeout, f"{self.name} to be healthy", every=0.1)


@dataclass(kw_only=True)
class WatchdogProcess(ShadowlineProcess):
    """`shadowline watchdog --cluster CLUSTER [--name NAME]`."""

    cluster: str
    watchdog_name: str | None = None  # None: the watchdog's default (SHADOWLINE_INSTANCE, host)
    started_at: int = 0  # the log's size when it was last started: where that start's lines begin

    def arguments(self) -> list[str]:
        named = ["--name", self.watchdog_name] if self.watchdog_name else []
        return ["watchdog", "--cluster", self.cluster, *named]

    def start(self) -> None:
        self.started_at = self.size()
        super().start()

    def wait_logged(self, words: str, timeout: float, after: int = 0) -> float:
        """Wait for a log line containing `words` past offset `after`; the monotonic time seen."""

        def seen() -> bool:
            self.check_running()
            return words in self.text(after)

        wait_for(seen, timeout, f"the watchdog to log {words!r}", every=0.01)
        return time.monotonic()

    def wait_watching(self, timeout: float = 30) -> None:
        """Until this start of the watchdog says it watches its cluster."""
        self.wait_logged(f"[{self.cluster}] watching", timeout, after=self.started_at)

    def logged_at(self, words: str, after: int = 0) -> float | None:
        """The wall-clock time of the first line past offset `after` containing `words`."""
        for line in self.text(after).splitlines():
            if words in line:
                try:
                    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    return None
        return None


def stop_all(processes: Iterable[ShadowlineProcess], timeout: float = 30) -> list[int | None]:
    """SIGTERM to every running one at once, then wait for each (SIGKILL after `timeout`);
    their exit codes. Each gets the signal once: a second SIGTERM would make a server skip its
    graceful shutdown."""
    every = list(processes)
    for process in every:
        if process.running:
            process.signal(signal.SIGCONT)  # one a test paused acts on SIGTERM only once resumed
            process.signal(signal.SIGTERM)
    return [process.reap(timeout) for process in every]


def instance(
    log: Path,
    *,
    name: str,
    cluster: str,
    database_url: str,
    password: str,
    secret: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> InstanceProcess:
    """An instance (not started) on a free port (`port` when it is free), with this process's
    environment plus its own settings; `env` overrides any of them."""
    bind = f"127.0.0.1:{free_port(port)}"
    environment = {
        **os.environ,
        "SHADOWLINE_DATABASE_URL": database_url,
        "SHADOWLINE_INSTANCE": name,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_HTTP_BIND": bind,
        "SHADOWLINE_ADMIN_PASSWORD": password,
        "SHADOWLINE_CLUSTER_SECRET": secret,
        **(env or {}),
    }
    scheme = "https" if environment.get("SHADOWLINE_TLS_CERT") else "http"
    return InstanceProcess(env=environment, log=log, url=f"{scheme}://{bind}")
