"""A master whose broker node is lost (SHADOWLINE_AMQP_URL lists two "nodes": TCP proxies in
front of the shared RabbitMQ, tests/integration/tcp_proxy) moves its link to the other within
its lease: it never fences itself and takes writes right after. The lease is the tests' usual
one (heartbeat 0.5 s, takeover delay 2 s: 1.2 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from shadowline.adapters.amqp_nodes import Nodes
from shadowline.adapters.broker import Names
from shadowline.bootstrap import Instance, build_instance
from shadowline.runtime import running
from tests.conftest import AMQP_URL, PASSWORDS, delete_cluster_topology, make_settings
from tests.integration.tcp_proxy import Proxy

BROKER_PORT = int(AMQP_URL.rsplit(":", 1)[1].split("/")[0])
VALUE = {"level": "INFO"}


class Beats:
    """The master's heartbeats as heard on monitoring (straight from the shared broker)."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self._new = asyncio.Event()

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        self.seqs.append(int(orjson.loads(message.body)["seq"]))
        self._new.set()

    async def after(self, seq: int) -> int:
        """Wait for a heartbeat with a higher seq than `seq`: one confirmed since then."""
        while not self.seqs or self.seqs[-1] <= seq:
            self._new.clear()
            await asyncio.wait_for(self._new.wait(), 10)
        return self.seqs[-1]


@pytest.fixture
async def nodes(rabbitmq: None) -> AsyncIterator[tuple[Proxy, Proxy]]:
    first, second = await Proxy(BROKER_PORT).start(), await Proxy(BROKER_PORT).start()
    yield first, second
    await first.cut()
    await second.cut()


async def _lose(node: Proxy, how: str) -> None:
    if how == "lost":
        await node.cut()
    else:
        node.freeze()  # nothing goes through either way; the sockets stay open


@pytest.mark.parametrize("how", ["lost", "frozen"])
async def test_a_master_whose_broker_node_is_lost_or_frozen_moves_on_within_its_lease_and_never_fences(
    db_url: str, nodes: tuple[Proxy, Proxy], how: str
) -> None:
    """Lost: the node's connections are reset. Frozen: it stops answering with its TCP
    connections open (SIGSTOP, a partition that drops packets), so no connection error comes,
    only confirms that do not; before, the master waited for AMQP heartbeats (a minute), lost
    its lease and fenced itself, and the watchdog failed it over (12 s without writes in the
    3-node cluster test)."""
    first, second = nodes
    settings = make_settings(
        db_url,
        amqp_url=f"{first.url()},{second.url()}",
        heartbeat_interval=0.5,
        takeover_delay=2.0,
    )
    instance = build_instance(settings)
    listener = await Nodes(AMQP_URL).connect()
    try:
        async with running(instance, migrate=False), client(instance) as http:
            assert (await http.post("/ha/enable", json={})).status_code == 200
            beats = await listen(listener, settings.cluster, settings.instance)
            seq = await beats.after(0)
            assert instance.broker.node == f"127.0.0.1:{first.port}"
            await _lose(first, how)
            fault = time.monotonic()
            await beats.after(seq + 1)  # one sent after the fault: through the second node
            took = time.monotonic() - fault
            print(f"\nnode {how} -> next heartbeat heard {1000 * took:.0f} ms")
            assert instance.broker.node == f"127.0.0.1:{second.port}"
            written = await http.put("/config/log-level/app", json=VALUE)
            assert written.status_code in (200, 201), written.text
            assert fencings(instance) == 0, "the lease held: the node was left in time"
    finally:
        await listener.close()
        await delete_cluster_topology(settings.cluster, [])


def client(instance: Instance) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=instance.asgi)
    auth = ("admin", PASSWORDS["admin"])
    return httpx.AsyncClient(transport=transport, base_url="http://instance", auth=auth)


async def listen(connection: AbstractConnection, cluster: str, instance: str) -> Beats:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(Names(cluster).monitoring, f"heartbeat.{instance}")
    beats = Beats()
    await queue.consume(beats, no_ack=True)
    return beats


def fencings(instance: Instance) -> float:
    samples = instance.metrics.registry.collect()
    return sum(
        s.value
        for metric in samples
        if metric.name == "shadowline_fencings"
        for s in metric.samples
        if s.name == "shadowline_fencings_total"
    )
