"""Real `shadowline` processes for end-to-end tests, stopped (or killed) and cleaned up after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    """One `shadowline instance` process that can be started, killed and started again."""

    env: dict[str, str]
    log: Path
    url: str
    popen: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "shadowline", "instance"],
                env=self.env,
                stdout=out,
                stderr=out,
            )

    def wait_healthy(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"instance exited with {self.popen.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                response = httpx.get(f"{self.url}/health", timeout=1)
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"instance not healthy after {timeout}s:\n{self.log.read_text()[-3000:]}"
        )

    def signal(self, signum: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        assert self.popen is not None
        code = self.popen.wait(timeout=timeout)
        self.exits.append(code)
        return code

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def instance_process(db_url: str, tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    env = {
        **os.environ,
        "SHADOWLINE_DATABASE_URL": db_url,
        "SHADOWLINE_INSTANCE": f"e2e-{port}",
        "SHADOWLINE_CLUSTER": f"e2e{port}",
        "SHADOWLINE_HTTP_BIND": f"127.0.0.1:{port}",
        "SHADOWLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHADOWLINE_CLUSTER_SECRET": "e2e-secret",
    }
    process = Process(env=env, log=tmp_path / "instance.log", url=f"http://127.0.0.1:{port}")
    yield process
    process.stop()
