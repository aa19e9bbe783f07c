"""Subscribe to a cluster's monitoring: heartbeats, role changes, failover steps, alerts and
config change summaries (schemas/monitoring/*.json), as an async or a sync iterator.

Each subscription binds an exclusive, server-named queue (`amq.gen-*`) to
shadowline.<cluster>.monitoring, so the read-only `shadowline-<cluster>-monitor` user of
`shadowline broker-setup` suffices. The queue lives as long as the subscription: what was sent
before it, or while it was away, is not delivered (monitoring is a live stream; the event log,
GET /events, is the history).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence

import orjson
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from shadowline.adapters.amqp_nodes import Nodes
from shadowline.adapters.broker import Names
from shadowline.client._loop import LoopThread
from shadowline.client.types import Json, MonitoringMessage

EVERYTHING = ("#",)


async def _bound_queue(
    connection: AbstractConnection, exchange: str, patterns: Sequence[str], wait: float | None
) -> AbstractQueue:
    """A server-named queue bound with every pattern. The cluster's instances declare the
    exchange: until one has started it does not exist, and with `wait` we wait that long."""
    waited = 0.0
    while True:
        channel: AbstractChannel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        try:
            for pattern in patterns:
                await queue.bind(exchange, pattern)
            return queue
        except ChannelNotFoundEntity:  # the failed bind closed that channel
            if wait is None or waited >= wait:
                raise
            await asyncio.sleep(0.5)
            waited += 0.5


def _message(routing_key: str, body: bytes) -> MonitoringMessage:
    try:
        doc: Json = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = {"raw": body[:1000].decode(errors="replace")}
    return MonitoringMessage(routing_key, doc)


async def subscribe(
    amqp_url: str,
    cluster: str,
    patterns: Sequence[str] = EVERYTHING,
    *,
    wait_for_cluster: float | None = 30.0,
) -> AsyncGenerator[MonitoringMessage, None]:
    """Yield the cluster's monitoring messages whose routing keys match `patterns` (AMQP topic
    patterns: `heartbeat.*`, `alert.*`, `role.changed`, `#`), as they arrive, until the loop
    stops or the connection is lost (then subscribe again)."""
    connection = await Nodes(amqp_url).connect(per_node=30)
    try:
        exchange = Names(cluster).monitoring
        queue = await _bound_queue(connection, exchange, patterns, wait_for_cluster)
        async with queue.iterator(no_ack=True) as messages:
            async for message in messages:
                yield _message(message.routing_key or "", message.body)
    finally:
        await connection.close()


def monitor(
    amqp_url: str,
    cluster: str,
    patterns: Sequence[str] = EVERYTHING,
    *,
    wait_for_cluster: float | None = 30.0,
) -> Iterator[MonitoringMessage]:
    """The sync twin of `subscribe`: a blocking iterator (close it, or leave the for loop)."""
    loop = LoopThread("shadowline-monitor")
    stream = subscribe(amqp_url, cluster, patterns, wait_for_cluster=wait_for_cluster)
    try:
        while True:
            try:
                yield loop.run(anext(stream))
            except StopAsyncIteration:
                return
    finally:
        try:
            loop.run(stream.aclose())
        finally:
            loop.close()
