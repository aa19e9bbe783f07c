"""A master, its shadow and a watchdog as three real processes, timed for a fast failover.

The instances are the `Node`s of the replication benchmark (fresh databases of their own,
`python -m shadowline instance`); the watchdog is `python -m shadowline watchdog`, started as
`shadowline demo` starts it (same cluster name and cluster secret). All three run with a
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
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from shadowline.adapters.broker import Names, delete_topology
from shadowline.bench.common import fresh_database
from shadowline.bench.replication_cluster import MASTER, SHADOW, Node
from shadowline.settings import Settings

TAKEOVER_DELAY = 2.0
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Watchdog:
    log: Path
    process: asyncio.subprocess.Process | None = None

    async def start(self, env: dict[str, str], cluster: str) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "shadowline", "watchdog", "--cluster", cluster),
                *("--name", "bench-watchdog"),
                env=env,
                stdout=out,
                stderr=out,
            )

    def text(self, after: int = 0) -> str:
        with self.log.open("rb") as log:
            log.seek(after)
            return log.read().decode(errors="replace")

    def size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    async def wait_logged(self, words: str, patience: float) -> None:
        deadline = time.monotonic() + patience
        while words not in self.text():
            if self.process is None or self.process.returncode is not None:
                raise RuntimeError(f"the watchdog exited (log: {self.log})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the watchdog did not log {words!r} (log: {self.log})")
            await asyncio.sleep(0.1)

    def logged_at(self, words: str, after: int) -> float | None:
        """The wall-clock time of the first line past offset `after` containing `words`."""
        for line in self.text(after).splitlines():
            if words in line:
                try:
                    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    return None
        return None


@dataclass
class HaCluster:
    cluster: str
    password: str
    env: dict[str, str]
    master: Node  # the current roles: swapped after each failover or switch
    shadow: Node
    watchdog: Watchdog
    keep_logs: bool = False  # set when a trial went wrong, or when asked to

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.master, self.shadow

    def swap(self) -> None:
        self.master, self.shadow = self.shadow, self.master

    async def health(self, node: Node) -> dict[str, Any] | None:
        try:
            response = await node.http.get("/health", timeout=1)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def in_sync(self) -> bool:
        """GET /ha on the master: its shadow connected and replication sync."""
        try:
            ha = (await self.master.http.get("/ha", timeout=2)).json()
        except (httpx.HTTPError, ValueError):
            return False
        shadow = ha.get("shadow") or {}
        return (
            ha.get("role") == "master"
            and ha.get("replication") == "sync"
            and shadow.get("instance") == self.shadow.name
            and shadow.get("state") == "connected"
        )

    async def wait_in_sync(self, patience: float = 30) -> float:
        begun = time.monotonic()
        while not await self.in_sync():
            for node in self.nodes:
                if node.process is None or node.process.returncode is not None:
                    raise RuntimeError(f"{node.name} is not running (log: {node.log})")
            if time.monotonic() - begun > patience:
                raise RuntimeError(
                    f"{self.shadow.name} not connected and sync to {self.master.name} within "
                    f"{patience:.0f}s; GET /ha: {await self._ha_docs()} "
                    f"(logs: {self.master.log.parent})"
                )
            await asyncio.sleep(0.1)
        return time.monotonic() - begun

    async def _ha_docs(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for node in self.nodes:
            try:
                found[node.name] = (await node.http.get("/ha", timeout=2)).json()
            except (httpx.HTTPError, ValueError) as error:
                found[node.name] = repr(error)
        return found

    def kill_master(self) -> None:
        assert self.master.process is not None
        self.master.process.send_signal(signal.SIGKILL)

    async def restart(self, node: Node) -> None:
        """Start a killed instance again on its own database: it finds the newer epoch."""
        assert node.process is not None
        await node.process.wait()
        await node.start(self.env)
        await node.wait_healthy()


async def _stop(nodes: list[Node], watchdog: Watchdog, problems: list[str]) -> None:
    if watchdog.process is not None and watchdog.process.returncode is None:
        watchdog.process.send_signal(signal.SIGTERM)  # first: no promotion during shutdown
        try:
            await asyncio.wait_for(watchdog.process.wait(), timeout=15)
        except TimeoutError:
            watchdog.process.kill()
            await watchdog.process.wait()
        if watchdog.process.returncode != 0:
            problems.append(f"the watchdog exited with code {watchdog.process.returncode}")
    running = [n for n in nodes if n.process is not None and n.process.returncode is None]
    await asyncio.gather(*(node.stop() for node in running))
    problems += [
        f"{node.name} exited with code {node.exit_code} after SIGTERM (log: {node.log})"
        for node in running
        if node.exit_code != 0
    ]


@asynccontextmanager
async def ha_cluster(settings: Settings, problems: list[str]) -> AsyncIterator[HaCluster]:
    """Master and shadow with HA confirmed and in sync, the watchdog watching; undone after.
    Processes that do not exit cleanly at the end are added to `problems`."""
    cluster = f"benchfo{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    amqp = settings.amqp_url.get_secret_value()
    env = {
        **os.environ,
        **TIMING,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_AMQP_URL": amqp,
        "SHADOWLINE_ADMIN_PASSWORD": password,
        "SHADOWLINE_CLUSTER_SECRET": secrets.token_hex(16),
    }
    async with AsyncExitStack() as stack:
        dbs = [
            await stack.enter_async_context(fresh_database(settings.database_url, purpose))
            for purpose in ("fm", "fs")
        ]
        logs = Path(tempfile.mkdtemp(prefix="shadowline-bench-failover-"))
        nodes = [
            Node(name, db, f"http://127.0.0.1:{_free_port()}", logs / f"{name}.log")
            for name, db in zip((MASTER, SHADOW), dbs, strict=True)
        ]
        for node in nodes:
            node.http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=node.url, auth=("admin", password), timeout=30)
            )
        # Shielded: Ctrl-C must still leave no broker names behind. Both were shadows.
        stack.push_async_callback(
            lambda: asyncio.shield(delete_topology(amqp, Names(cluster), [MASTER, SHADOW]))
        )
        watchdog = Watchdog(logs / "watchdog.log")
        the_cluster = HaCluster(cluster, password, env, nodes[0], nodes[1], watchdog)
        found: list[str] = []
        failed = False
        try:
            for node in nodes:
                await node.start(env)
            await asyncio.gather(*(node.wait_healthy() for node in nodes))
            master, shadow = nodes
            await master.call("POST", "/ha/enable", {})
            join = {"master_url": master.url, "user": "admin", "password": password}
            await shadow.call("POST", "/ha/join", join)
            await master.call("POST", "/ha/confirm", {"shadow": shadow.name})
            await the_cluster.wait_in_sync()
            await watchdog.start(env, cluster)
            await watchdog.wait_logged(f"[{cluster}] watching", patience=60)
            # A watchdog that just started gives every instance one takeover delay to be heard.
            await asyncio.sleep(TAKEOVER_DELAY + 0.5)
            yield the_cluster
        except BaseException:
            failed = True
            raise
        finally:
            await asyncio.shield(_stop(nodes, watchdog, found))
            problems += found
            if failed or found or the_cluster.keep_logs:
                print(f"instance and watchdog logs kept in {logs}", file=sys.stderr)
            else:
                shutil.rmtree(logs, ignore_errors=True)
