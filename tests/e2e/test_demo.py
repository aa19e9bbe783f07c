"""`shadowline demo`, the README's first command, as a newcomer runs it: it prints the URLs of a
master, a shadow and a watchdog that work, the HA screens answer, and a `kill -9` of the master
(the line the demo prints) gives a failover, then the old master back as the new one's shadow.
A config command published on the broker as guest, as the README shows for the demo, is applied
(the demo opts guest in: no master allows it by default).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shadowline.adapters.migrate import drop_database
from shadowline.client import BrokerClient
from tests.conftest import AMQP_URL, database_url, delete_cluster_topology
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


class Demo:
    def __init__(self, cluster: str, cwd: Path) -> None:
        self.cluster = cluster
        env = {**os.environ, "SHADOWLINE_AMQP_URL": AMQP_URL}
        env["SHADOWLINE_DATABASE_URL"] = database_url("postgres")
        command = [sys.executable, "-m", "shadowline", "demo", "--cluster", cluster]
        self.process = subprocess.Popen(
            [*command, "--port", str(free_port()), "--exit-after", "240"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{''.join(self.lines)}")


@pytest.fixture
def demo(postgres: None, rabbitmq: None, tmp_path: Path) -> Iterator[Demo]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    running = Demo(cluster, tmp_path)
    yield running
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGINT)
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.process.kill()
    for role in ("master", "shadow"):
        asyncio.run(drop_database(database_url(f"shadowline_{cluster}_{role}")))
    asyncio.run(delete_cluster_topology(cluster, ["demo-master", "demo-shadow"]))


def _health(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/health", timeout=1)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _wait_role(url: str, role: str, epoch: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _health(url)
        if found and (found["role"], found["epoch"]) == (role, epoch):
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} is not {role} in epoch {epoch}: {_health(url)}")


def test_the_demo_runs_a_cluster_whose_master_can_be_killed_and_comes_back_as_shadow(
    demo: Demo,
) -> None:
    demo.wait_for(r"Press Ctrl-C to stop", timeout=120)
    master = demo.wait_for(r"^\s+master\s+(http://\S+)", 1)[1]
    shadow = demo.wait_for(r"^\s+shadow\s+(http://\S+)", 1)[1]
    watchdog = demo.wait_for(r"^\s+watchdog\s+(http://\S+)", 1)[1]
    password = demo.wait_for(r"user admin, password (\S+)", 1)[1]
    pid = int(demo.wait_for(r"kill -9 (\d+)", 1)[1])
    auth = ("admin", password)

    screen = httpx.get(f"{master}/", auth=auth, timeout=10)
    assert screen.status_code == 200 and "High Availability" in screen.text
    assert httpx.get(f"{watchdog}/health", timeout=10).json()["ok"] is True
    assert httpx.get(f"{shadow}/config", auth=auth, timeout=10).json()["position"] >= 4
    with BrokerClient(AMQP_URL, demo.cluster, timeout=30) as broker:
        reply = broker.put("subaccount", "from-broker", {"region": "eu10", "subaccount_id": "b"})
    assert (reply["ok"], reply["version"]) == (True, 1), reply
    item = httpx.get(f"{master}/config/subaccount/from-broker", auth=auth, timeout=10).json()
    assert item["version"] == 1

    os.kill(pid, signal.SIGKILL)
    _wait_role(shadow, "master", 2, timeout=30)
    demo.wait_for(r"demo-master exited with code -9; starting it again", 10)
    _wait_role(master, "shadow", 2, timeout=60)

    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=30) == 0
