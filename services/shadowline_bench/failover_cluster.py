"""A master, its shadow and a watchdog as three real processes, timed for a fast failover.

The processes are the harness's (shadowline.harness: fresh databases of their own,
`python -m shadowline instance`, and `python -m shadowline watchdog` with the same cluster
name and cluster secret, as `shadowline demo` starts them). All three run with a
heartbeat of 0.5 s and a takeover delay of 2 s. The pair is reused from trial to trial: a
killed master is restarted and rejoins as the shadow of the new one, so the roles alternate
between the same two processes and databases. Everything is undone afterwards (processes
stopped, databases dropped, broker names deleted); the logs are kept when something went wrong.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shadowline import harness
from shadowline.adapters.broker import Names, delete_topology
from shadowline.harness import WatchdogProcess
from shadowline.settings import Settings
from shadowline_bench.common import fresh_database
from shadowline_bench.replication_cluster import MASTER, SHADOW, Node

TAKEOVER_DELAY = 2.0
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}


@dataclass
class HaCluster:
    """The harness's cluster of processes, and the benchmark's async clients of its instances;
    `master` and `shadow` are the roles of now, swapped with the harness's."""

    processes: harness.HaCluster
    master: Node
    shadow: Node
    keep_logs: bool = False  # set when a trial went wrong, or when asked to

    @property
    def cluster(self) -> str:
        return self.processes.cluster

    @property
    def password(self) -> str:
        return self.processes.password

    @property
    def watchdog(self) -> WatchdogProcess:
        assert self.processes.watchdog is not None
        return self.processes.watchdog

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.master, self.shadow

    def swap(self) -> None:
        self.master, self.shadow = self.shadow, self.master
        self.processes.swap()

    async def health(self, node: Node) -> dict[str, Any] | None:
        """GET /health on the benchmark's own client: polled every 20 ms while timing."""
        try:
            response = await node.http.get("/health", timeout=1)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def wait_in_sync(self, patience: float = 30) -> float:
        """Seconds until the master's shadow is connected and replication sync."""
        return await asyncio.to_thread(self.processes.wait_in_sync, patience)

    def kill_master(self) -> None:
        self.master.process.signal(signal.SIGKILL)

    async def restart(self, node: Node) -> None:
        """Start a killed instance again on its own database: it finds the newer epoch."""
        await asyncio.to_thread(self.processes.restart, node.process)


def _processes(
    settings: Settings, databases: list[str], logs: Path, password: str
) -> harness.HaCluster:
    cluster = f"benchfo{uuid.uuid4().hex[:8]}"
    amqp = settings.amqp_url.get_secret_value()
    secret = secrets.token_hex(16)
    master, shadow = [
        harness.instance(
            logs / f"{name}.log",
            name=name,
            cluster=cluster,
            database_url=database,
            password=password,
            secret=secret,
            env={"SHADOWLINE_AMQP_URL": amqp, **TIMING},
        )
        for name, database in zip((MASTER, SHADOW), databases, strict=True)
    ]
    env = {
        **os.environ,
        **TIMING,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_AMQP_URL": amqp,
        "SHADOWLINE_CLUSTER_SECRET": secret,
    }
    watchdog = WatchdogProcess(
        env=env, log=logs / "watchdog.log", cluster=cluster, watchdog_name="bench-watchdog"
    )
    return harness.HaCluster(cluster, password, master, shadow, watchdog)


async def _set_up(the_cluster: HaCluster) -> None:
    """HA confirmed and in sync, then the watchdog watching and heard by both."""
    processes = the_cluster.processes
    await asyncio.to_thread(processes.set_up, 90)
    await the_cluster.wait_in_sync()
    await asyncio.to_thread(processes.start_watchdog, 60)
    # A watchdog that just started gives every instance one takeover delay to be heard.
    await asyncio.sleep(TAKEOVER_DELAY + 0.5)


@asynccontextmanager
async def ha_cluster(settings: Settings, problems: list[str]) -> AsyncIterator[HaCluster]:
    """Master and shadow with HA confirmed and in sync, the watchdog watching; undone after.
    Processes that do not exit cleanly at the end are added to `problems`."""
    password = secrets.token_urlsafe(12)
    async with AsyncExitStack() as stack:
        dbs = [
            await stack.enter_async_context(fresh_database(settings.database_url, purpose))
            for purpose in ("fm", "fs")
        ]
        logs = Path(tempfile.mkdtemp(prefix="shadowline-bench-failover-"))
        processes = _processes(settings, dbs, logs, password)
        nodes = [Node(processes.master), Node(processes.shadow)]
        for node in nodes:
            node.http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=node.url, auth=("admin", password), timeout=30)
            )
        amqp, names = settings.amqp_url.get_secret_value(), Names(processes.cluster)
        # Shielded: Ctrl-C must still leave no broker names behind. Both were shadows.
        stack.push_async_callback(
            lambda: asyncio.shield(delete_topology(amqp, names, [MASTER, SHADOW]))
        )
        the_cluster = HaCluster(processes, nodes[0], nodes[1])
        found: list[str] = []
        failed = False
        try:
            await _set_up(the_cluster)
            yield the_cluster
        except BaseException:
            failed = True
            raise
        finally:
            found += await asyncio.shield(asyncio.to_thread(processes.stop))
            problems += found
            if failed or found or the_cluster.keep_logs:
                print(f"instance and watchdog logs kept in {logs}", file=sys.stderr)
            else:
                shutil.rmtree(logs, ignore_errors=True)
