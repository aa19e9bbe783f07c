"""Failover end to end: a master, its shadow and a watchdog as real processes, a write load that
follows the master, and the verdicts the failover tests share.

Every process runs with a heartbeat of 0.5 s and a takeover delay of 2 s (master lease 1.2 s),
so a failover completes in about two seconds and each test stays short. The load runs in a
thread with its own event loop, so a test may block (sleep, poll, signal processes) freely.
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shadowline import harness
from shadowline.domain import watchdog_peers
from shadowline.harness import WatchdogProcess
from tests.conftest import ADMIN_PASSWORD, AMQP_URL, delete_cluster_topology
from tests.e2e.conftest import Pair, Process, make_process
from tests.e2e.tcpproxy import TcpProxy
from tests.e2e.write_load import Ack, Answer, WriteLoad, mapping

__all__ = [  # the write load's names too: the failover tests import them from here
    "HA_ENV",
    "NAMES",
    "TAKEOVER_DELAY",
    "Ack",
    "Answer",
    "HaCluster",
    "Watchdog",
    "WriteLoad",
    "admin",
    "assert_every_ack_is_on",
    "assert_single_promotion",
    "events",
    "ha_cluster",
    "ha_cluster_behind_proxy",
    "health",
    "is_role",
    "longest_gap",
    "mapping",
    "name_of",
    "promotions",
    "verify_agrees",
    "wait_for",
    "wait_role",
]

TAKEOVER_DELAY = 2.0
HA_ENV = {
    "SHADOWLINE_HEARTBEAT_INTERVAL": "0.5",
    "SHADOWLINE_TAKEOVER_DELAY": str(TAKEOVER_DELAY),
}
NAMES = ("node-a", "node-b")  # node-a starts as the master

# -- polling (the product's harness, under the names the tests use) ------------------------------

wait_for = harness.wait_for
wait_role = harness.wait_role
is_role = harness.cluster.is_role


def admin(process: Process, timeout: float = 10) -> httpx.Client:
    return harness.admin(process, ADMIN_PASSWORD, timeout)


def health(process: Process) -> dict[str, Any] | None:
    """GET /health, or None while the process is down, paused or starting."""
    return process.health(timeout=0.5)


def health_of(process: Process) -> dict[str, Any]:
    """GET /health of a process that must be up."""
    found = health(process)
    assert found is not None, f"{name_of(process)} is down"
    return found


def events(process: Process) -> list[dict[str, Any]]:
    with admin(process, timeout=30) as client:
        response = client.get("/events", params={"limit": 1_000_000})
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


def promotions(process: Process) -> list[dict[str, Any]]:
    return [e for e in events(process) if e["type"] == "MasterPromoted"]


def name_of(process: Process) -> str:
    return process.name


# -- the watchdog --------------------------------------------------------------------------------


class Watchdog(WatchdogProcess):
    """`shadowline watchdog --cluster C` as a real process; every start logs to the same file
    and is named anew (watchdog-1, watchdog-2, ...), as a restarted watchdog on another host."""

    def __init__(self, env: dict[str, str], log: Path, cluster: str) -> None:
        super().__init__(env=env, log=log, cluster=cluster)
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.watchdog_name = f"watchdog-{self.starts}"
        super().start()

    def stop(self, timeout: float = 10) -> int | None:
        return super().stop(timeout)


# -- the cluster ---------------------------------------------------------------------------------


@dataclass
class HaCluster:
    pair: Pair
    watchdog: Watchdog
    proxy: TcpProxy | None = None  # between node-a and RabbitMQ, when asked for

    @property
    def cluster(self) -> str:
        return self.pair.cluster

    @property
    def master(self) -> Process:
        """The instance that started as the master (node-a)."""
        return self.pair.master

    @property
    def shadow(self) -> Process:
        """The instance that started as the shadow (node-b)."""
        return self.pair.shadow

    def set_up(self, *, watchdog: bool = True) -> None:
        """Master and shadow with HA confirmed, replication sync, and the watchdog watching."""
        self.pair.set_up()
        self.wait_sync(self.master)
        if watchdog:
            self.watchdog.start()
            self.watchdog.wait_watching()

    def wait_sync(self, master: Process, timeout: float = 30) -> None:
        def sync() -> bool:
            return (harness.cluster.ha(master, ADMIN_PASSWORD) or {}).get("replication") == "sync"

        wait_for(sync, timeout, f"replication of {name_of(master)} to be sync", every=0.1)

    def resume_all(self) -> None:
        """SIGCONT everything a test may have paused, so teardown can stop it."""
        for process in (self.master, self.shadow):
            if process.running:
                process.signal(signal.SIGCONT)


async def _ha_cluster(db_factory: Any, tmp_path: Path, *, proxy: bool) -> AsyncIterator[HaCluster]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    link = None
    env = dict(HA_ENV)
    if proxy:
        link = TcpProxy("127.0.0.1", 5672)
        link.start()
        env["SHADOWLINE_AMQP_URL"] = link.url_for(AMQP_URL)
    master = make_process(
        await db_factory(), tmp_path / "node-a.log", name=NAMES[0], cluster=cluster, **env
    )
    shadow = make_process(
        await db_factory(), tmp_path / "node-b.log", name=NAMES[1], cluster=cluster, **HA_ENV
    )
    watchdog_env = {
        **os.environ,
        **HA_ENV,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_CLUSTER_SECRET": master.env["SHADOWLINE_CLUSTER_SECRET"],
        "SHADOWLINE_AMQP_URL": AMQP_URL,
    }
    ha = HaCluster(
        Pair(master, shadow, cluster), Watchdog(watchdog_env, tmp_path / "watchdog.log", cluster)
    )
    ha.proxy = link
    try:
        yield ha
    finally:
        ha.watchdog.stop()
        ha.resume_all()
        if link is not None:
            link.restore()
        for process in (shadow, master):
            process.stop()
        if link is not None:
            link.close()
        await delete_cluster_topology(cluster, list(NAMES))


@pytest.fixture
async def ha_cluster(
    db_factory: Callable[[], Awaitable[str]], rabbitmq: None, tmp_path: Path
) -> AsyncIterator[HaCluster]:
    """A cluster not yet started: call `set_up()`."""
    async for ha in _ha_cluster(db_factory, tmp_path, proxy=False):
        yield ha


@pytest.fixture
async def ha_cluster_behind_proxy(
    db_factory: Callable[[], Awaitable[str]], rabbitmq: None, tmp_path: Path
) -> AsyncIterator[HaCluster]:
    """Like `ha_cluster`, but node-a reaches RabbitMQ only through `cluster.proxy`."""
    async for ha in _ha_cluster(db_factory, tmp_path, proxy=True):
        yield ha


# -- verdicts ------------------------------------------------------------------------------------


def assert_every_ack_is_on(process: Process, acks: list[Ack]) -> None:
    """Every acknowledged write is in `process`'s log at its position, with its value, and the
    item's current version there is at least the last acknowledged one."""
    log = events(process)
    by_position = {e["position"]: e for e in log}
    assert sorted(by_position) == list(range(1, len(log) + 1)), "positions are not gap-free"
    lost = []
    for ack in acks:
        event = by_position.get(ack.position)
        found = None if event is None else (event["kind"], event["name"], event["version"])
        if (
            event is None
            or found != (ack.kind, ack.name, ack.version)
            or event["data"] != ack.value
        ):
            lost.append(f"{ack} -> {event}")
    assert not lost, f"{len(lost)} acknowledged writes lost on {name_of(process)}:\n" + "\n".join(
        lost[:10]
    )
    latest: dict[str, Ack] = {}
    for ack in acks:
        if ack.name not in latest or ack.version > latest[ack.name].version:
            latest[ack.name] = ack
    with admin(process) as client:
        for name, ack in latest.items():
            item = client.get(f"/config/system-mapping/{name}").json()
            assert item["version"] >= ack.version, f"{name}: {item} older than {ack}"


def assert_single_promotion(process: Process) -> dict[str, Any]:
    found = promotions(process)
    assert len(found) == 1, f"{len(found)} MasterPromoted events on {name_of(process)}: {found}"
    return found[0]


def verify_agrees(shadow: Process, timeout: float = 15) -> dict[str, Any]:
    """`GET /ha/verify` on a shadow, once it has caught up with its master."""

    def agreed() -> dict[str, Any] | None:
        with admin(shadow) as client:
            response = client.get("/ha/verify")
        if response.status_code != 200:
            return None
        doc = response.json()
        return doc if doc["agree"] else None

    return wait_for(agreed, timeout, f"GET /ha/verify on {name_of(shadow)} to agree", every=0.2)


def longest_gap(acks: list[Ack], start: float, end: float) -> float:
    """The longest time between two consecutive acknowledgements within [start, end]."""
    moments = sorted([start, end, *(a.received for a in acks if start <= a.received <= end)])
    return max(b - a for a, b in itertools.pairwise(moments))


def in_order(cluster: str, *watchdogs: WatchdogProcess) -> list[WatchdogProcess]:
    """The watchdogs in the order of the rule between them: the first promotes, the next one
    only once the first has stopped announcing itself (DESIGN.md, "Beyond one machine")."""
    return sorted(watchdogs, key=lambda w: watchdog_peers.order_key(cluster, str(w.watchdog_name)))
