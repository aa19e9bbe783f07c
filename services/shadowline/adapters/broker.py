"""RabbitMQ: one robust link per process, confirmed publishing, and what is read off a delivery.

The names and the topology are in adapters.topology (re-exported here for their callers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    DeliveryMode,
)

from shadowline.adapters import publish_channel
from shadowline.adapters.amqp_nodes import CONNECT_TIMEOUT, NodeConnection
from shadowline.adapters.topology import (
    ALL_EXCHANGES,
    CONFIG_DELIVERY_LIMIT,
    DELIVERY_LIMIT,
    Names,
    connect,
    declare_config_command_queue,
    declare_exchanges,
    declare_replication_queue,
    delete_topology,
    deliveries,
    last_delivery,
)
from shadowline.domain import signing, trust
from shadowline.domain.events import Event, envelope

__all__ = [
    "ALL_EXCHANGES",
    "CONFIG_DELIVERY_LIMIT",
    "DELIVERY_LIMIT",
    "BrokerLink",
    "Names",
    "connect",
    "declare_config_command_queue",
    "declare_exchanges",
    "declare_replication_queue",
    "delete_topology",
    "deliveries",
    "heartbeat_in",
    "json_message",
    "last_delivery",
    "message_for",
]

log = logging.getLogger(__name__)


def heartbeat_in(
    message: AbstractIncomingMessage, secret: str | None, cluster: str, fresh: trust.Freshness
) -> tuple[dict[str, object] | None, str | None]:
    """The heartbeat a delivery carries if it is authentic and fresh (domain.trust), else why
    not: what instances and watchdogs alike act on."""
    mac = (message.headers or {}).get(trust.MAC_HEADER)
    routing_key = message.routing_key or ""
    return trust.heartbeat_refusal(
        secret, cluster, routing_key, message.body, mac, fresh, time.time()
    )


def json_message(
    body: Any,
    *,
    message_id: str | None = None,
    headers: dict[str, Any] | None = None,
    persistent: bool = True,
    expiration: float | None = None,
    correlation_id: str | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        orjson.dumps(body),
        content_type="application/json",
        message_id=message_id,
        correlation_id=correlation_id,
        headers=headers or {},
        delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
        expiration=expiration,
    )


def message_for(event: Event) -> tuple[str, aio_pika.Message]:
    """A replicated event as the relay publishes it: its envelope, routed by kind and type."""
    return event.routing_key, json_message(
        envelope(event),
        message_id=str(event.id),
        headers={"position": event.position, "epoch": event.epoch, "type": event.type},
    )


CLOSE_WITHIN = 2.0  # seconds a clean close may take before the socket is dropped


class BrokerLink:
    """One robust connection per instance, its channels and the exchanges it uses."""

    def __init__(
        self,
        url: str,
        names: Names,
        connection_name: str,
        prefetch: int = 1000,
        declare: tuple[str, ...] = ALL_EXCHANGES,
        secret: str | None = None,
        per_node: float = CONNECT_TIMEOUT,
    ) -> None:
        self.url = url  # one node, or several of one RabbitMQ cluster (comma-separated)
        self.per_node = per_node  # how long each node may take to answer a (re)connection
        self.secret = secret  # MACs every monitoring message (domain.trust)
        self._declare = declare
        self.names = names
        self.connection_name = connection_name
        self._prefetch = prefetch
        self._connection: NodeConnection | None = None
        self._publish: AbstractChannel | None = None
        self._consume: AbstractChannel | None = None
        # Several role tasks start the link at once: without the lock each would connect, and
        # the connections all but the last left open (with their exclusive queues) for ever.
        self._starting = asyncio.Lock()
        self._renewing = asyncio.Lock()
        self.exchanges: dict[str, AbstractExchange] = {}

    @property
    def ready(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    @property
    def node(self) -> str | None:
        """The broker node (host:port) this link is connected to now; None while it is not
        (not started, or reconnecting)."""
        return self._connection.node if self._connection is not None else None

    def abandon_node(self, why: str, silent: float) -> bool:
        """Leave the node this link is on for the next (see NodeConnection.abandon)."""
        return self._connection is not None and self._connection.abandon(why, silent)

    def quiet(self) -> float | None:
        return self._connection.quiet() if self._connection is not None else None

    async def answers(self, within: float) -> bool:
        """Whether the node answers a request within `within` s (Basic.Qos: no queue, no
        metadata, only the channel's own process on the node): a frozen node does not. The
        request is left to finish, never cancelled: aiormq closes a channel whose RPC is
        cancelled, and the broker then the whole connection."""
        if self._publish is None:
            return False
        probe = asyncio.ensure_future(self._publish.set_qos(prefetch_count=0))
        probe.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            await asyncio.wait_for(asyncio.shield(probe), within)
        except Exception:
            return False
        return True

    async def start(self) -> None:
        async with self._starting:
            if self._connection is None:
                await self._connect()

    async def _connect(self) -> None:
        connection = await connect(self.url, self.connection_name, self.per_node)
        try:
            self._publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self.exchanges = await declare_exchanges(self._publish, self.names, self._declare)
            self._consume = await connection.channel()
            await self._consume.set_qos(prefetch_count=self._prefetch)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    async def replication_queue(self, shadow: str) -> AbstractQueue:
        assert self._consume is not None, "start() first"
        return await declare_replication_queue(self._consume, self.names, shadow)

    async def delete_replication_queue(self, shadow: str) -> None:
        assert self._publish is not None, "start() first"
        await self._publish.queue_delete(self.names.replication_queue(shadow))

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        """Publish on monitoring; returns once the broker confirmed it (the master's lease rests
        on that). Nobody may be listening, so an unroutable message is fine here."""
        exchange = self.exchanges.get("monitoring")
        if exchange is None:
            raise ConnectionError("not connected to RabbitMQ")
        message = json_message(body, persistent=False, expiration=ttl)
        if self.secret:
            mac = trust.message_mac(self.secret, self.names.cluster, routing_key, message.body)
            message.headers[trust.MAC_HEADER] = mac
        await exchange.publish(message, routing_key, mandatory=False, timeout=5)

    async def publish_event(self, event: Event, confirm_within: float) -> None:
        """Publish a replicated event (`message_for`) and wait for the broker's confirm.

        Straight on the underlying aiormq channel with wait=False: aio-pika's publish holds the
        channel lock until the frame is written, which serializes a window of concurrent
        publishes behind one event-loop turn each on a busy loop. The confirm still decides the
        outcome, and an unroutable message raises (the channel has on_return_raises).
        """
        assert self._publish is not None, "start() first"
        routing_key, message = message_for(event)
        channel = await self._publish.get_underlay_channel()
        try:
            await channel.basic_publish(
                message.body,
                exchange=self.names.events,
                routing_key=routing_key,
                properties=message.properties,
                mandatory=True,
                timeout=confirm_within,
                wait=False,  # type: ignore[call-arg]  # aiormq >= 7 has it; its ABC does not
            )
        except Exception as error:
            if publish_channel.nacked(error):
                await self._renew_publishing(channel)
            raise

    async def _renew_publishing(self, nacked: object) -> None:
        """Publish on a new channel from now on, once per nacked channel (publish_channel)."""
        async with self._renewing:
            if self._connection is None or self._publish is None:
                return
            if await self._publish.get_underlay_channel() is not nacked:
                return  # renewed already, after another publish's nack on it
            self._publish, self.exchanges = await publish_channel.renewed(
                self._connection, self._publish, self.exchanges
            )
            log.warning("the broker nacked a publish: publishing on a new channel")

    async def publish_command(self, routing_key: str, body: Any) -> None:
        await self.exchanges["commands"].publish(
            json_message(body, persistent=False, expiration=signing.WINDOW),
            routing_key,
            mandatory=True,
            timeout=5,
        )

    async def config_command_queue(self, prefetch: int) -> tuple[AbstractChannel, AbstractQueue]:
        """The config command queue on a channel of its own, whose prefetch is `prefetch`: the
        master holds few commands, the others wait in the queue for whoever is master."""
        assert self._connection is not None, "start() first"
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=prefetch)
            return channel, await declare_config_command_queue(channel, self.names)
        except BaseException:
            await channel.close()
            raise

    async def publish_reply(self, reply_to: str, correlation_id: str | None, body: Any) -> None:
        """Answer a command on the default exchange (direct reply-to works only there), with
        the broker's confirm. Not mandatory: a publisher that stopped waiting is no error."""
        assert self._publish is not None, "start() first"
        message = json_message(body, persistent=False, correlation_id=correlation_id)
        await self._publish.default_exchange.publish(message, reply_to, mandatory=False, timeout=5)

    async def heartbeat_queue(self, instances: Iterable[str] = ("*",)) -> AbstractQueue:
        """An exclusive, server-named queue bound to the heartbeats of `instances` (`*`: every
        instance's; an instance binds its peers' only, see entrypoints.amqp.heartbeats)."""
        assert self._consume is not None, "start() first"
        queue = await self._consume.declare_queue(exclusive=True, auto_delete=True)
        for instance in instances:
            await queue.bind(self.names.monitoring, f"heartbeat.{instance}")
        return queue

    async def command_queue(self, instance: str) -> AbstractQueue:
        """An exclusive, server-named queue of the commands addressed to this instance.

        Server-named, as the heartbeat queue: an exclusive queue of a fixed name stays locked
        by the connection that declared it until the broker notices that connection is gone,
        so after leaving a frozen node the link could not declare it again elsewhere
        (RESOURCE_LOCKED) for as long as the cluster takes to notice (net_ticktime, 60 s by
        default). Who may bind `*.<instance>` is the broker's topic permission (broker-setup)."""
        assert self._consume is not None, "start() first"
        queue = await self._consume.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.names.commands, f"*.{instance}")
        return queue

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:  # a node that stopped answering would hold the close handshake for minutes
                await asyncio.wait_for(asyncio.shield(connection.close()), CLOSE_WITHIN)
            except TimeoutError:
                connection.abandon(f"no answer to closing within {CLOSE_WITHIN:g} s")
