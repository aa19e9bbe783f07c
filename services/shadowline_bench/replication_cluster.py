"""A master and its shadow as two real `shadowline instance` processes, for one measurement.

Each has a fresh database of its own (dropped afterwards whatever happens); the pair gets a
unique cluster name whose broker topology is deleted at the end. HA is set up as an operator
does it (shadowline demo, tests/e2e): enable on the master, join on the shadow, confirm on the
master. The processes log to a temporary directory that is removed when both exit cleanly and
named otherwise.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection

from shadowline.adapters.broker import Names, delete_topology
from shadowline.adapters.db import create_engine
from shadowline.adapters.store import EventStore
from shadowline.harness import InstanceProcess, instance, start_all, stop_all
from shadowline.harness.cluster import confirm, enable_and_join
from shadowline.settings import Settings
from shadowline_bench.common import fresh_database
from shadowline_bench.replication_metrics import Scrape, parse

MASTER, SHADOW = "bench-master", "bench-shadow"


@dataclass
class Node:
    """One instance process (the harness's) and an async HTTP client of it for the load."""

    process: InstanceProcess
    exit_code: int | None = None
    http: httpx.AsyncClient = field(init=False, repr=False)

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def log(self) -> Path:
        return self.process.log

    @property
    def database_url(self) -> str:
        return self.process.env["SHADOWLINE_DATABASE_URL"]

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def wait_healthy(self, patience: float = 90) -> None:
        await asyncio.to_thread(self.process.wait_healthy, patience)

    async def position(self) -> int:
        response = await self.http.get("/health")
        response.raise_for_status()
        return int(response.json()["position"])

    async def scrape(self) -> Scrape:
        response = await self.http.get("/metrics")
        response.raise_for_status()
        return parse(response.text)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method} {path} on {self.name}: {response.status_code} {response.text}"
            )
        return response.json()


async def stop(nodes: Sequence[Node]) -> None:
    """SIGTERM, as an operator would; a graceful shutdown ends with exit code 0."""
    codes = await asyncio.to_thread(stop_all, [node.process for node in nodes])
    for node, code in zip(nodes, codes, strict=True):
        node.exit_code = code


class Pipeline:
    """Where the master's events are on their way: published and confirmed by the broker (the
    relay's cursor, in the master's database), and ready in the shadow's queue (not yet
    delivered to the shadow, whose prefetched and unacked messages are not counted)."""

    def __init__(self, database_url: str, amqp_url: str, queue: str) -> None:
        self._engine = create_engine(database_url, pool_size=1)
        self._store = EventStore(self._engine)
        self._amqp_url, self._queue = amqp_url, queue
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def _ready(self) -> int | None:
        try:
            if self._connection is None:
                self._connection = await aio_pika.connect(self._amqp_url, timeout=10)
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._connection.channel()
            queue = await self._channel.declare_queue(self._queue, passive=True, timeout=5)
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError):
            return None  # no queue yet (HA not set up) or the broker is away: not known
        count = queue.declaration_result.message_count
        return int(count) if count is not None else None

    async def read(self) -> tuple[int, int | None]:
        """(relay cursor, messages ready in the shadow's queue)."""
        return await asyncio.gather(self._store.relay_cursor(), self._ready())

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        await self._engine.dispose()


@dataclass
class Pair:
    cluster: str
    password: str
    master: Node
    shadow: Node
    pipeline: Pipeline

    @property
    def started(self) -> bool:
        return any(node.process.popen is not None for node in self.nodes)

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.master, self.shadow

    async def start(self) -> None:
        await asyncio.to_thread(start_all, [node.process for node in self.nodes], 90)

    async def enable_and_join(self) -> None:
        await asyncio.to_thread(
            enable_and_join, self.master.process, self.shadow.process, self.password
        )

    async def confirm(self) -> None:
        await asyncio.to_thread(confirm, self.master.process, self.shadow.process, self.password)

    async def wait_caught_up(self, patience: float, poll: float = 0.05) -> float | None:
        """Seconds until the shadow's position reaches the master's (None: not within patience).

        Call it when the master takes no more writes: its position is read once."""
        begun = time.perf_counter()
        target = await self.master.position()
        while time.perf_counter() - begun < patience:
            if await self.shadow.position() >= target:
                return time.perf_counter() - begun
            await asyncio.sleep(poll)
        return None

    async def set_up_ha(self, patience: float = 120) -> None:
        await self.enable_and_join()
        await self.confirm()
        if await self.wait_caught_up(patience) is None:
            raise RuntimeError(f"the shadow did not catch up within {patience:.0f}s")

    def exit_problems(self) -> list[str]:
        return [
            f"{node.name} exited with code {node.exit_code} after SIGTERM (log: {node.log})"
            for node in self.nodes
            if node.process.popen is not None and node.exit_code != 0
        ]


def _tell_exits(nodes: list[Node]) -> None:
    """A refused connection is most often a process that died (or was stopped by someone)."""
    for node in nodes:
        if (code := node.process.returncode) is not None:
            print(f"{node.name} had already exited with code {code}", file=sys.stderr)


def _nodes(
    cluster: str, password: str, databases: tuple[str, str], logs: Path, amqp: str
) -> list[Node]:
    """The master's and the shadow's processes, not started, on databases of their own."""
    secret = secrets.token_hex(16)
    return [
        Node(
            instance(
                logs / f"{name}.log",
                name=name,
                cluster=cluster,
                database_url=database,
                password=password,
                secret=secret,
                env={"SHADOWLINE_AMQP_URL": amqp},
            )
        )
        for name, database in zip((MASTER, SHADOW), databases, strict=True)
    ]


@asynccontextmanager
async def pair(
    settings: Settings,
    purpose: str,
    prepare_master: Callable[[str], Awaitable[None]] | None = None,
    problems: list[str] | None = None,
) -> AsyncIterator[Pair]:
    """Two fresh databases, two started processes (HA not yet set up); everything undone after.

    `prepare_master(database_url)` runs before the processes start (e.g. to fill the store).
    Processes that do not exit cleanly are added to `problems`."""
    cluster = f"benchrepl{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    amqp = settings.amqp_url.get_secret_value()
    async with AsyncExitStack() as stack:
        master_db = await stack.enter_async_context(fresh_database(settings.database_url, "rm"))
        shadow_db = await stack.enter_async_context(fresh_database(settings.database_url, "rs"))
        logs = Path(tempfile.mkdtemp(prefix=f"shadowline-bench-{purpose}-"))
        nodes = _nodes(cluster, password, (master_db, shadow_db), logs, amqp)
        for node in nodes:
            node.http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=node.url, auth=("admin", password), timeout=60)
            )
        pipeline = Pipeline(master_db, amqp, Names(cluster).replication_queue(SHADOW))
        stack.push_async_callback(pipeline.close)
        the_pair = Pair(cluster, password, nodes[0], nodes[1], pipeline)
        # Shielded: Ctrl-C must still leave no broker names behind.
        stack.push_async_callback(
            lambda: asyncio.shield(delete_topology(amqp, Names(cluster), [SHADOW]))
        )
        keep_logs = False
        try:
            if prepare_master is not None:
                await prepare_master(master_db)
            await the_pair.start()
            yield the_pair
        except BaseException:
            keep_logs = the_pair.started
            _tell_exits(nodes)
            raise
        finally:
            await asyncio.shield(stop(nodes))
            found = the_pair.exit_problems()
            if problems is not None:
                problems += found
            if keep_logs or found:
                print(f"instance logs kept in {logs}", file=sys.stderr)
            else:
                shutil.rmtree(logs, ignore_errors=True)
