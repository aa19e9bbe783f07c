"""RabbitMQ: the names DESIGN.md fixes, idempotent topology declaration, confirmed publishing.

Every service declares what it uses at start (declaring is idempotent in RabbitMQ as long as the
arguments agree), so no start order between master, shadow and watchdog matters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
)

from shadowline.domain import signing, trust

log = logging.getLogger(__name__)

# RabbitMQ 3.10 sets no delivery limit on quorum queues by default: a poison message would be
# redelivered for ever. After this many deliveries it is dead-lettered (and alerted).
DELIVERY_LIMIT = 5
# Config commands: a quorum queue counts every return as a delivery, and a fenced master hands
# back (nacks) the command it holds, so the limit must leave room for failovers and fencings
# besides the real failures the master counts itself.
CONFIG_DELIVERY_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Names:
    cluster: str

    @property
    def events(self) -> str:
        return f"shadowline.{self.cluster}.events"

    @property
    def monitoring(self) -> str:
        return f"shadowline.{self.cluster}.monitoring"

    @property
    def commands(self) -> str:
        return f"shadowline.{self.cluster}.commands"

    @property
    def dead_letter(self) -> str:
        return f"shadowline.{self.cluster}.dead-letter"

    def replication_queue(self, shadow: str) -> str:
        return f"shadowline.{self.cluster}.replication.{shadow}"

    @property
    def config_commands(self) -> str:
        # Not `commands.config`: that is the exclusive command queue of an instance named
        # `config` (commands.<instance>), and the two could not both exist.
        return f"shadowline.{self.cluster}.config-commands"


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection: it reconnects by itself and restores channels and topology."""
    connection = await aio_pika.connect_robust(url, client_properties={"connection_name": name})
    connection.reconnect_callbacks.add(lambda *_: log.warning("reconnected to RabbitMQ"))
    connection.close_callbacks.add(lambda *_: log.warning("connection to RabbitMQ lost"))
    return connection


ALL_EXCHANGES = ("events", "monitoring", "commands", "dead_letter")


async def declare_exchanges(
    channel: AbstractChannel, names: Names, kinds: tuple[str, ...] = ALL_EXCHANGES
) -> dict[str, AbstractExchange]:
    """Declare the exchanges named by `kinds` (a watchdog's user may declare only its own)."""
    topic = aio_pika.ExchangeType.TOPIC
    exchanges = {
        kind: await channel.declare_exchange(getattr(names, kind), topic, durable=True)
        for kind in kinds
    }
    if "dead_letter" in exchanges:
        dead = await channel.declare_queue(
            names.dead_letter, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(exchanges["dead_letter"], "#")
    return exchanges


async def declare_replication_queue(
    channel: AbstractChannel, names: Names, shadow: str
) -> AbstractQueue:
    """The shadow's durable quorum queue, bound to every replicated event."""
    queue = await channel.declare_queue(
        names.replication_queue(shadow),
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": names.dead_letter,
            "x-dead-letter-routing-key": f"replication.{shadow}",
        },
    )
    await queue.bind(names.events, "config.#")
    await queue.bind(names.events, "ha.#")
    return queue


async def declare_config_command_queue(channel: AbstractChannel, names: Names) -> AbstractQueue:
    """The cluster's queue of config commands (config.put.<kind>, config.delete.<kind>).

    Durable quorum queue, so commands wait here while no instance may write (a failover) and
    whoever is master next answers them. Single active consumer: should two instances ever
    consume at once (a handover), only one gets commands, so they are still applied in order.
    """
    queue = await channel.declare_queue(
        names.config_commands,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-single-active-consumer": True,
            "x-delivery-limit": CONFIG_DELIVERY_LIMIT,
            "x-dead-letter-exchange": names.dead_letter,
            "x-dead-letter-routing-key": "commands.config",
        },
    )
    # Three words: never matched by the `*.<instance>` binding of an instance's promote queue.
    await queue.bind(names.commands, "config.#")
    return queue


def deliveries(message: AbstractIncomingMessage) -> int:
    """How often the queue had this message delivered and returned before: `x-delivery-count`,
    set by quorum queues (0 or absent on the first delivery). Every return counts, a nack or
    reject with requeue and a channel closed while holding it alike."""
    count = (message.headers or {}).get("x-delivery-count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def last_delivery(message: AbstractIncomingMessage, limit: int) -> bool:
    """True when a consumer must not return this message to its queue (x-delivery-limit
    `limit`) again, but reject it (requeue=False: dead-lettered) and raise alert.dead-lettered.

    A quorum queue dead-letters a returned message once its count exceeds the limit, silently;
    so the deliveries are counts 0..limit. The consumer gives up one early, at limit - 1: that
    keeps one delivery spare for a consumer that dies holding the message (its return counts
    too), and the next one still gets to raise the alert."""
    return deliveries(message) >= limit - 1


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
    ) -> None:
        self._url = url
        self._secret = secret  # MACs every monitoring message (domain.trust)
        self._declare = declare
        self.names = names
        self._connection_name = connection_name
        self._prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._publish: AbstractChannel | None = None
        self._consume: AbstractChannel | None = None
        # Several role tasks start the link at once: without the lock each would connect, and
        # the connections all but the last left open (with their exclusive queues) for ever.
        self._starting = asyncio.Lock()
        self.exchanges: dict[str, AbstractExchange] = {}

    @property
    def ready(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def start(self) -> None:
        async with self._starting:
            if self._connection is None:
                await self._connect()

    async def _connect(self) -> None:
        connection = await connect(self._url, self._connection_name)
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
        if self._secret:
            mac = trust.message_mac(self._secret, self.names.cluster, routing_key, message.body)
            message.headers[trust.MAC_HEADER] = mac
        await exchange.publish(message, routing_key, mandatory=False, timeout=5)

    async def publish_event(
        self, message: aio_pika.Message, routing_key: str, confirm_within: float
    ) -> None:
        """Publish a replicated event and wait for the broker's confirm.

        Straight on the underlying aiormq channel with wait=False: aio-pika's publish holds the
        channel lock until the frame is written, which serializes a window of concurrent
        publishes behind one event-loop turn each on a busy loop. The confirm still decides the
        outcome, and an unroutable message raises (the channel has on_return_raises).
        """
        assert self._publish is not None, "start() first"
        channel = await self._publish.get_underlay_channel()
        await channel.basic_publish(
            message.body,
            exchange=self.names.events,
            routing_key=routing_key,
            properties=message.properties,
            mandatory=True,
            timeout=confirm_within,
            wait=False,  # type: ignore[call-arg]  # aiormq >= 7 has it; its ABC does not say so
        )

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

    async def heartbeat_queue(self) -> AbstractQueue:
        """An exclusive, server-named queue of this cluster's heartbeats."""
        assert self._consume is not None, "start() first"
        queue = await self._consume.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.names.monitoring, "heartbeat.*")
        return queue

    async def command_queue(self, instance: str) -> AbstractQueue:
        """An exclusive queue of the commands addressed to this instance."""
        assert self._consume is not None, "start() first"
        queue = await self._consume.declare_queue(
            f"{self.names.commands}.{instance}", exclusive=True, auto_delete=True
        )
        await queue.bind(self.names.commands, f"*.{instance}")
        return queue

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


async def delete_topology(url: str, names: Names, shadows: list[str]) -> None:
    """Delete a cluster's queues and exchanges (the demo and the tests start from nothing)."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        queues = [names.dead_letter, names.config_commands]
        for queue in [*queues, *(names.replication_queue(s) for s in shadows)]:
            await channel.queue_delete(queue)
        for exchange in (names.events, names.monitoring, names.commands, names.dead_letter):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
