"""Real `shadowline` processes for end-to-end tests, stopped (or killed) and cleaned up after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, AMQP_URL, delete_cluster_topology


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


def make_process(db_url: str, log: Path, *, name: str, cluster: str, **env: str) -> Process:
    port = free_port()
    environment = {
        **os.environ,
        "SHADOWLINE_DATABASE_URL": db_url,
        "SHADOWLINE_INSTANCE": name,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_HTTP_BIND": f"127.0.0.1:{port}",
        "SHADOWLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SHADOWLINE_CLUSTER_SECRET": "e2e-secret",
        "SHADOWLINE_AMQP_URL": AMQP_URL,
        **env,
    }
    return Process(env=environment, log=log, url=f"http://127.0.0.1:{port}")


@pytest.fixture
def instance_process(db_url: str, tmp_path: Path) -> Iterator[Process]:
    process = make_process(
        db_url, tmp_path / "instance.log", name="e2e-solo", cluster=f"e2e{uuid.uuid4().hex[:8]}"
    )
    yield process
    process.stop()


@dataclass
class Pair:
    master: Process
    shadow: Process
    cluster: str

    def admin(self, process: Process) -> httpx.Client:
        return httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD), timeout=30)

    def set_up(self, auto_confirm: bool = False) -> None:
        """Start both, enable HA on the master, join the shadow, confirm it."""
        for process in (self.master, self.shadow):
            process.start()
        for process in (self.master, self.shadow):
            process.wait_healthy()
        with self.admin(self.master) as master, self.admin(self.shadow) as shadow:
            assert master.post("/ha/enable", json={"auto_confirm": auto_confirm}).status_code == 200
            joined = shadow.post(
                "/ha/join",
                json={"master_url": self.master.url, "user": "admin", "password": ADMIN_PASSWORD},
            )
            assert joined.status_code == 200, joined.text
            if not auto_confirm:
                confirmed = master.post("/ha/confirm", json={})
                assert confirmed.status_code == 200, confirmed.text


@pytest.fixture
async def pair(db_factory, rabbitmq, tmp_path: Path) -> AsyncIterator[Pair]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    master = make_process(
        await db_factory(), tmp_path / "master.log", name="master", cluster=cluster
    )
    shadow = make_process(
        await db_factory(), tmp_path / "shadow.log", name="shadow", cluster=cluster
    )
    yield Pair(master, shadow, cluster)
    for process in (shadow, master):
        process.stop()
    await delete_cluster_topology(cluster, ["shadow"])
