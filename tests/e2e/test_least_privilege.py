"""A whole cluster on the least-privilege users of `shadowline broker-setup`: master and shadow
on their own instance users, a watchdog, a config publisher and a monitoring reader on theirs.
Setup, replication, a failover, the old master's return as shadow, and config commands before
and after all work, and no process was ever refused anything by the broker (a refused publish
would close a channel and show as ACCESS_REFUSED in its log).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shadowline.client import BrokerClient, subscribe
from tests.conftest import ADMIN_PASSWORD, delete_cluster_topology
from tests.e2e.conftest import Pair, Process, make_process
from tests.e2e.failover_fixtures import HA_ENV, NAMES, Watchdog, wait_for, wait_role

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl beside the broker"
)


def _url(user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:5672/"


def broker_users(cluster: str, instances: tuple[str, ...]) -> dict[str, str]:
    """Role (instance name, watchdog, monitor, publisher) -> AMQP URL of its new user."""
    named = [arg for name in instances for arg in ("--instance", name)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shadowline",
            "broker-setup",
            "--cluster",
            cluster,
            *named,
            "--apply",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    users = dict(line.split("\t") for line in done.stdout.strip().splitlines())
    prefix = f"shadowline-{cluster}-"
    return {user.removeprefix(prefix): _url(user, password) for user, password in users.items()}


@dataclass
class Heard:
    """Every monitoring message (routing key, sender) the monitor user heard, from a thread."""

    url: str
    cluster: str
    messages: list[tuple[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)
        self.thread.start()

    async def _listen(self) -> None:
        # Cancelled only at the end: a cancelled anext() would end the subscription.
        collecting = asyncio.ensure_future(self._collect())
        stopped = asyncio.ensure_future(asyncio.to_thread(self.stop.wait))
        await asyncio.wait([collecting, stopped], return_when=asyncio.FIRST_COMPLETED)
        collecting.cancel()
        await asyncio.gather(collecting, return_exceptions=True)

    async def _collect(self) -> None:
        async for message in subscribe(self.url, self.cluster, ["#"], wait_for_cluster=60):
            sender = message.body.get("instance") or message.body.get("watchdog") or ""
            self.messages.append((message.routing_key, str(sender)))

    def keys(self) -> set[str]:
        return {key for key, _ in list(self.messages)}


@dataclass
class Cluster:
    name: str
    urls: dict[str, str]
    pair: Pair
    watchdog: Watchdog
    heard: Heard

    @property
    def logs(self) -> list[Path]:
        return [self.pair.master.log, self.pair.shadow.log, self.watchdog.log]


@pytest.fixture
def users(rabbitmq: None) -> Iterator[tuple[str, dict[str, str]]]:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    urls = broker_users(name, NAMES)
    yield name, urls
    for role in urls:
        subprocess.run(
            ["rabbitmqctl", "delete_user", f"shadowline-{name}-{role}"],
            capture_output=True,
            check=False,
        )


@pytest.fixture
async def cluster(
    db_factory: Callable[[], Awaitable[str]], users: tuple[str, dict[str, str]], tmp_path: Path
) -> AsyncIterator[Cluster]:
    name, urls = users
    master, shadow = [
        make_process(
            await db_factory(),
            tmp_path / f"{node}.log",
            name=node,
            cluster=name,
            SHADOWLINE_AMQP_URL=urls[node],
            **HA_ENV,
        )
        for node in NAMES
    ]
    env = {
        **os.environ,
        **HA_ENV,
        "SHADOWLINE_CLUSTER": name,
        "SHADOWLINE_CLUSTER_SECRET": master.env["SHADOWLINE_CLUSTER_SECRET"],
        "SHADOWLINE_AMQP_URL": urls["watchdog"],
    }
    found = Cluster(
        name,
        urls,
        Pair(master, shadow, name),
        Watchdog(env, tmp_path / "watchdog.log", name),
        Heard(urls["monitor"], name),
    )
    try:
        yield found
    finally:
        found.heard.stop.set()
        found.watchdog.stop()
        for process in (shadow, master):
            process.stop()
        if found.heard.thread is not None:
            found.heard.thread.join(timeout=10)
        await delete_cluster_topology(name, list(NAMES))


def _value(process: Process, name: str) -> object:
    auth = ("admin", ADMIN_PASSWORD)
    response = httpx.get(f"{process.url}/config/subaccount/{name}", auth=auth, timeout=5)
    return response.json().get("value") if response.status_code == 200 else None


def test_a_cluster_on_least_privilege_users_replicates_fails_over_and_is_monitored(
    cluster: Cluster,
) -> None:
    old, new = cluster.pair.master, cluster.pair.shadow
    cluster.pair.set_up()
    cluster.heard.start()
    cluster.watchdog.start()
    cluster.watchdog.wait_watching()
    value = {"region": "eu10", "subaccount_id": "before"}
    with BrokerClient(cluster.urls["publisher"], cluster.name) as publisher:
        first = publisher.put("subaccount", "before", value)
    assert first["epoch"] == 1
    wait_for(lambda: _value(new, "before") == value, 15, "the shadow to apply the change")

    old.signal(signal.SIGKILL)
    old.wait()
    wait_role(new, "master", 2, timeout=20)
    after = {"region": "eu10", "subaccount_id": "after"}
    with BrokerClient(cluster.urls["publisher"], cluster.name) as publisher:
        second = publisher.put("subaccount", "after", after)
    assert second["epoch"] == 2

    old.start()  # comes back, learns of epoch 2, rejoins as the new master's shadow
    wait_role(old, "shadow", 2, timeout=30)
    wait_for(lambda: _value(old, "after") == after, 30, "the old master to catch up as shadow")

    wanted = {
        "heartbeat.node-a", "heartbeat.node-b", "role.changed", "config.changed",
        "failover.probing", "failover.promoted",
    }  # fmt: skip
    try:
        wait_for(lambda: wanted <= cluster.heard.keys(), 15, f"the monitor to hear {wanted}")
    finally:
        print("heard:", sorted(cluster.heard.keys()))
    for key, sender in list(cluster.heard.messages):
        if key.startswith("heartbeat."):
            assert key == f"heartbeat.{sender}", "an instance spoke for another"
    refused = [p.name for p in cluster.logs if "ACCESS_REFUSED" in p.read_text(errors="replace")]
    assert refused == [], "the broker refused a process something its role needs"
