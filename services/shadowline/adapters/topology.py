"""RabbitMQ's names for a cluster (DESIGN.md fixes them) and the idempotent declaration of its
topology: every service declares what it uses at start (declaring is idempotent in RabbitMQ as
long as the arguments agree), so no start order between master, shadow and watchdog matters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue

from shadowline.adapters import amqp_nodes

log = logging.getLogger("shadowline.adapters.broker")

# Quorum queues get their replicas from the broker cluster: no x-quorum-initial-group-size, so
# RabbitMQ starts one on every node (or `quorum_queue.initial_cluster_size` of rabbitmq.conf).
# The argument takes part in the equivalence check (RabbitMQ 3.10.8 answers a re-declaration
# with another value, or without it, PRECONDITION_FAILED): a process configured otherwise, or an
# older one, could then no longer declare the queues at start.
# RabbitMQ 3.10 sets no delivery limit on quorum queues by default: a poison message would be
# redelivered for ever. After this many deliveries it is dead-lettered (and alerted).
DELIVERY_LIMIT = 5
# Config commands: a quorum queue counts every return as a delivery, and a fenced master hands
# back (nacks) the command it holds, so the limit must leave room for failovers and fencings
# besides the real failures the master counts itself.
CONFIG_DELIVERY_LIMIT = 20


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


async def connect(
    urls: str, name: str, per_node: float = amqp_nodes.CONNECT_TIMEOUT
) -> amqp_nodes.NodeConnection:
    """A robust connection to the first of the nodes (`urls`, comma-separated) that answers:
    it reconnects by itself, to the next node first, and restores channels and topology there
    (amqp_nodes logs each node it is on and loses)."""
    connection = await amqp_nodes.connect_robust(urls, name, per_node=per_node)
    connection.reconnect_callbacks.add(
        lambda *_: log.warning("reconnected to RabbitMQ node %s", connection.node)
    )
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


async def delete_topology(urls: str, names: Names, shadows: list[str]) -> None:
    """Delete a cluster's queues and exchanges (the demo and the tests start from nothing), on
    whichever node of `urls` answers first."""
    connection = await amqp_nodes.Nodes(urls).connect(per_node=10)
    try:
        channel = await connection.channel()
        queues = [names.dead_letter, names.config_commands]
        for queue in [*queues, *(names.replication_queue(s) for s in shadows)]:
            await channel.queue_delete(queue)
        for exchange in (names.events, names.monitoring, names.commands, names.dead_letter):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
