"""The connection a master's lease rides on: its heartbeats, and nothing else.

A master's lease is its heartbeats confirmed by the broker (application.liveness). On the
instance's main link they shared one connection with the replicated events, and RabbitMQ's
credit flow blocks a whole connection (its reader stops reading the socket) while one channel
waits on a queue: when the broker node that led the replication quorum queue froze, the events
waited for a new leader (seconds), the connection with them, and the heartbeats behind them, so
the master lost its lease and was failed over though another node would have taken it. On a
connection of their own the heartbeats reach the watchdog and are confirmed meanwhile: writes
pause for the blip, the lease holds.

Nothing to restore on it either: no queue, no consumer, and the monitoring exchange (which the
main link declares) is named, not declared. Declaring a queue or a binding is a write to the
broker cluster's metadata, which waits, on every node, until a frozen node is noticed as gone
(net_ticktime); a reconnection that had to restore one would keep the heartbeats waiting that
long. So leaving a node here costs a TCP and AMQP handshake only. What it reads is its
confirms, so silence alone proves nothing (a confirm may wait on another node's queue): the
liveness leaves a node silent for half the lease only if it answers no request either
(BrokerLink.answers), and the main link then leaves that node too, once as silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aio_pika
from aio_pika.exceptions import ChannelNotFoundEntity, DeliveryError

from shadowline.adapters.broker import BrokerLink
from shadowline.adapters.topology import connect

log = logging.getLogger(__name__)

NACK_LOG_EVERY = 60.0  # seconds: a queue that refuses every heartbeat logs a line that often


class LeaseLink(BrokerLink):
    def __init__(self, main: BrokerLink) -> None:
        super().__init__(
            main.url,
            main.names,
            f"{main.connection_name} heartbeats",
            declare=(),
            secret=main.secret,
            per_node=main.per_node,
        )
        self._main = main
        self._leaving: set[asyncio.Task[None]] = set()
        self._nack_logged = 0.0

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        """Publish a heartbeat and wait for the broker's confirm. A nack is no confirm: it does
        not say which queue refused (a length limit with `reject-publish`, which anyone who may
        declare a queue and bind it can set up, or the watchdog's own queue under a policy),
        so it renews no lease; it is logged, and the node, having answered, is not left. An
        exchange gone (deleted by a broker user) is declared again, for the next heartbeat."""
        try:
            await super().publish_monitoring(routing_key, body, ttl)
        except DeliveryError as refused:
            now = time.monotonic()
            if now - self._nack_logged >= NACK_LOG_EVERY:
                self._nack_logged = now
                log.warning("a queue refused %s (%s): not confirmed", routing_key, refused)
            raise
        except ChannelNotFoundEntity:
            await self._declare_monitoring()
            raise

    async def _declare_monitoring(self) -> None:
        """On a channel of its own: the broker closed the heartbeats' one for the 404."""
        assert self._connection is not None, "start() first"
        with contextlib.suppress(Exception):  # the next heartbeat tries again
            async with asyncio.timeout(self.per_node):
                async with self._connection.channel() as channel:
                    topic = aio_pika.ExchangeType.TOPIC
                    await channel.declare_exchange(self.names.monitoring, topic, durable=True)
            log.warning("the exchange %s was gone: declared it again", self.names.monitoring)

    async def _connect(self) -> None:
        connection = await connect(self.url, self.connection_name, self.per_node)
        try:
            self._publish = await connection.channel(publisher_confirms=True)
            exchange = await self._publish.get_exchange(self.names.monitoring, ensure=False)
        except BaseException:
            await connection.close()
            raise
        self.exchanges = {"monitoring": exchange}
        self._connection = connection

    def abandon_node(self, why: str, silent: float) -> bool:
        node = self.node
        if not super().abandon_node(why, silent):
            return False
        if node is not None:
            task = asyncio.get_running_loop().create_task(self._main_leaves(node, why, silent))
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)
        return True

    async def _main_leaves(self, node: str, why: str, silent: float) -> None:
        """The main link leaves `node` too, if it is on it, once it has been as silent (for at
        most four times that: a main link that keeps hearing from the node stays)."""
        deadline = asyncio.get_running_loop().time() + 4 * silent
        while self._main.node == node and asyncio.get_running_loop().time() < deadline:
            if self._main.abandon_node(f"{why} (on the heartbeats' connection)", silent):
                return
            await asyncio.sleep(max(0.05, silent - (self._main.quiet() or 0.0)))
