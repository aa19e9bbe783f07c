"""`shadowline demo`, the README's first command, as a newcomer runs it: it prints the URLs of a
master, a shadow and a watchdog that work, the HA screens answer, and a `kill -9` of the master
(the line the demo prints) gives a failover, after which the demo says who is master now and
prints the new kill line; the old master comes back as the new one's shadow. A config command
published on the broker as guest, as the README shows for the demo, is applied (the demo opts
guest in: no master allows it by default). A second demo of the same cluster refuses to wipe it
without --force, and `--clean` removes its databases, broker names and logs. Each demo here is
started as a shell starts `shadowline demo &` (SIGINT ignored); `kill -INT` and `kill -TERM`
stop it and every process it started, as Ctrl-C does.
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

import aio_pika
import httpx
import pytest

from shadowline.adapters.broker import Names
from shadowline.adapters.migrate import database_exists, drop_database
from shadowline.client import BrokerClient
from tests.conftest import AMQP_URL, database_url, delete_cluster_topology
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


def demo_env() -> dict[str, str]:
    return {
        **os.environ,
        "SHADOWLINE_AMQP_URL": AMQP_URL,
        "SHADOWLINE_DATABASE_URL": database_url("postgres"),
    }


def demo_command(cluster: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "shadowline", "demo", "--cluster", cluster, *options]


# As a shell without job control runs `shadowline demo &`: SIGINT ignored, inherited.
IN_THE_BACKGROUND = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]


class Demo:
    def __init__(self, cluster: str, cwd: Path, *options: str) -> None:
        self.cluster = cluster
        env = demo_env()
        command = demo_command(cluster, "--port", str(free_port()), "--exit-after", "240")
        self.process = subprocess.Popen(
            [*IN_THE_BACKGROUND, *command, *options],
            stdin=subprocess.DEVNULL,
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

    def children(self) -> list[int]:
        """The processes the demo started (node-a, node-b, the watchdog) that run now."""
        pid = self.process.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def stop(self, signum: int) -> None:
        """Signal the demo; it exits 0 and leaves none of its processes running."""
        children = self.children()
        assert len(children) == 3, children
        self.process.send_signal(signum)
        assert self.process.wait(timeout=60) == 0, "".join(self.lines)
        self.wait_for(r"^stopping node-a, node-b, watchdog \.\.\.", 1)
        self.wait_for(rf"demo --clean --cluster {self.cluster}` removes them", 1)
        left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        assert left == [], f"still running after the demo stopped: {left}"

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


NODES = ("node-a", "node-b")


def databases(cluster: str) -> list[str]:
    return [f"shadowline_{cluster}_{node.replace('-', '_')}" for node in NODES]


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
    for name in databases(cluster):
        asyncio.run(drop_database(database_url(name)))
    asyncio.run(delete_cluster_topology(cluster, list(NODES)))


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
    exported = demo.wait_for(r"export SHADOWLINE_URL=(\S+) ", 1)[1]
    assert exported == f"{master},{shadow}"  # both: it still holds after a failover
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

    assert demo.wait_for(r"^\s+master\s+\S+\s+(\S+),", 1)[1] == "node-a"
    # The commands are in the README tour's order: the kill line before switch-roles.
    text = "".join(demo.lines)
    assert text.index("kill -9") < text.index("ha switch-roles") < text.index("Press Ctrl-C")

    os.kill(pid, signal.SIGKILL)
    _wait_role(shadow, "master", 2, timeout=30)
    demo.wait_for(r"node-a exited with code -9; starting it again", 10)
    now = demo.wait_for(r"now master: (\S+) at (http://\S+) \(epoch 2\)", 30)
    assert (now[1], now[2]) == ("node-b", shadow)
    new_pid = int(demo.wait_for(r"^\s+kill -9 (\d+)\s+# to kill the master of now", 1)[1])
    after = "".join(demo.lines).split("now master:", 1)[1]  # its curl lines: the master of now
    assert re.findall(r"curl -u admin:\S+ (\S+)/(?:ha|metrics)\b", after)[:2] == [shadow] * 2
    assert new_pid != pid
    assert _health(shadow) is not None  # the new kill line names the live master's process
    os.kill(new_pid, 0)
    # The SHADOWLINE_URL printed before the failover finds the master of now by itself.
    written = subprocess.run(
        [sys.executable, "-m", "shadowline", "config", "put", "subaccount", "after-failover",
         '{"region": "eu10", "subaccount_id": "c"}'],
        env={**demo_env(), "SHADOWLINE_URL": exported, "SHADOWLINE_USER": "admin",
             "SHADOWLINE_PASSWORD": password},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert written.returncode == 0, written.stdout + written.stderr
    item = httpx.get(f"{shadow}/config/subaccount/after-failover", auth=auth, timeout=10)
    assert item.json()["version"] == 1
    _wait_role(master, "shadow", 2, timeout=60)

    demo.stop(signal.SIGTERM)  # as Ctrl-C: everything it started stops with it


def test_a_second_demo_of_an_existing_cluster_refuses_to_wipe_it_and_clean_removes_everything(
    postgres: None, rabbitmq: None, tmp_path: Path
) -> None:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    first = Demo(cluster, tmp_path)
    try:
        first.wait_for(r"Press Ctrl-C to stop", timeout=120)
        log_dir = tmp_path / ".shadowline-demo" / cluster
        assert sorted(p.name for p in log_dir.glob("*.log")) == [
            "node-a.log", "node-b.log", "watchdog.log",
        ]  # fmt: skip
        while_running = subprocess.run(
            demo_command(cluster, "--clean"), cwd=tmp_path, env=demo_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert while_running.returncode == 1
        assert "is running" in while_running.stderr
        first.stop(signal.SIGINT)  # its shell ignored SIGINT: the demo listens all the same

        again = subprocess.run(
            demo_command(cluster, "--exit-after", "1"), cwd=tmp_path, env=demo_env(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert again.returncode == 1, again.stdout + again.stderr
        assert "exists from an earlier demo" in again.stderr and "--force" in again.stderr
        assert f"`shadowline demo --clean --cluster {cluster}` removes it" in again.stderr
        for name in databases(cluster):  # untouched: the first demo's data is still there
            assert asyncio.run(database_exists(database_url(name)))

        cleaned = subprocess.run(
            demo_command(cluster, "--clean"), cwd=tmp_path, env=demo_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed demo cluster {cluster}" in cleaned.stdout
        for name in databases(cluster):
            assert not asyncio.run(database_exists(database_url(name)))
        assert not log_dir.exists()
        assert asyncio.run(broker_names_left(cluster)) == []
    finally:
        if first.process.poll() is None:
            first.process.kill()
        for name in databases(cluster):
            asyncio.run(drop_database(database_url(name)))
        asyncio.run(delete_cluster_topology(cluster, list(NODES)))


async def broker_names_left(cluster: str) -> list[str]:
    """Which of the cluster's exchanges and durable queues still exist (passive declares)."""
    names = Names(cluster)
    left = []
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        queues = [names.config_commands, names.dead_letter, *map(names.replication_queue, NODES)]
        for queue in queues:
            channel = await connection.channel()
            try:
                await channel.declare_queue(queue, passive=True)
                left.append(queue)
            except aio_pika.exceptions.ChannelClosed:
                pass
        for exchange in (names.events, names.monitoring, names.commands, names.dead_letter):
            channel = await connection.channel()
            try:
                await channel.declare_exchange(exchange, passive=True)
                left.append(exchange)
            except aio_pika.exceptions.ChannelClosed:
                pass
    finally:
        await connection.close()
    return left
