"""One RabbitMQ connection for every cluster a watchdog watches.

A link per cluster (adapters.broker.BrokerLink) would be 1,000 connections, 3,000 channels and
1,000 consumers for a watchdog of 1,000 clusters. Here one robust connection carries a channel
with publisher confirms for what the watchdog sends (monitoring and commands of every cluster)
and a channel consuming one exclusive, server-named queue bound to every cluster's
`heartbeat.*` and `failover.watchdog`: a delivery's exchange says which cluster it is about.
Each message is authenticated with its own cluster's keys (domain.watchdog_trust), derived once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustConnection,
)

from shadowline.adapters.amqp_consumer import LeanConsumer
from shadowline.adapters.broker import json_message
from shadowline.adapters.topology import Names, connect, declare_exchanges
from shadowline.domain import signing, trust
from shadowline.domain.watchdog_trust import ANNOUNCEMENT, ClusterKeys

log = logging.getLogger("shadowline.watchdog")

START_WITHIN = 60.0  # seconds for the consumer's first bindings (2 per cluster, pipelined)
HeartbeatHandler = Callable[[str, dict[str, Any] | None, str | None], None]
AnnouncementHandler = Callable[[dict[str, Any] | None, str | None, float], None]


@dataclass(slots=True)
class _Cluster:
    names: Names
    keys: ClusterKeys | None
    on_heartbeat: HeartbeatHandler
    on_announcement: AnnouncementHandler
    exchanges: dict[str, AbstractExchange]
    commands: AbstractExchange | None = None


class SharedLink:
    """The watchdog process's one broker connection; `cluster(name)` is one cluster's view."""

    def __init__(self, url: str, connection_name: str, me: str) -> None:
        self._url = url
        self._connection_name = connection_name
        self._me = me
        self._connection: AbstractRobustConnection | None = None
        self._publish: AbstractChannel | None = None
        self._commands: AbstractChannel | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._lean: LeanConsumer | None = None
        self._clusters: dict[str, _Cluster] = {}  # by monitoring exchange name
        self._by_name: dict[str, _Cluster] = {}

    @property
    def ready(self) -> bool:
        connected = self._connection is not None and not self._connection.is_closed
        return connected and self._lean is not None and self._lean.ready

    def add(
        self,
        cluster: str,
        secret: str | None,
        on_heartbeat: HeartbeatHandler,
        on_announcement: AnnouncementHandler,
    ) -> ClusterLink:
        names = Names(cluster)
        keys = ClusterKeys(cluster, secret) if secret else None
        entry = _Cluster(names, keys, on_heartbeat, on_announcement, {})
        self._clusters[names.monitoring] = entry
        self._by_name[cluster] = entry
        return ClusterLink(self, cluster)

    async def start(self) -> None:
        """Connect, declare every cluster's exchanges, and consume their heartbeats and
        announcements once the lean consumer has bound its queue to each."""
        connection = await connect(self._url, self._connection_name)
        try:
            self._publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
            # Promote commands on a channel of their own: never queued behind monitoring.
            self._commands = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            for entry in self._by_name.values():
                entry.exchanges = await declare_exchanges(
                    self._publish, entry.names, ("monitoring", "commands")
                )
                entry.commands = await self._commands.get_exchange(
                    entry.names.commands, ensure=False
                )
            bindings = [
                (monitoring, key)
                for monitoring in self._clusters
                for key in ("heartbeat.*", ANNOUNCEMENT)
            ]
            consumer = LeanConsumer(
                self._url, f"{self._connection_name} heartbeats", bindings, self._deliver
            )
            self._consumer = asyncio.create_task(consumer.run())
            await asyncio.wait_for(consumer.connected.wait(), START_WITHIN)
        except BaseException:
            if self._consumer is not None:
                self._consumer.cancel()
            await connection.close()
            raise
        self._connection, self._lean = connection, consumer

    def _deliver(
        self, exchange: str, routing_key: str, headers: dict[str, Any], body: bytes
    ) -> None:
        """The hot path: every heartbeat of every cluster, synchronously off the socket."""
        entry = self._clusters.get(exchange)
        if entry is None:
            return
        mac = headers.get(trust.MAC_HEADER)
        now = time.time()
        if routing_key == ANNOUNCEMENT:
            if entry.keys is None:
                return
            doc, refusal = entry.keys.announcement(body, mac, self._me, now)
            if doc is not None or refusal is not None:
                at = doc.get("at", now) if doc is not None else now
                entry.on_announcement(doc, refusal, min(max(0.0, now - at), trust.WINDOW))
            return
        if entry.keys is None:
            entry.on_heartbeat(routing_key, None, "no cluster secret to authenticate heartbeats")
            return
        beat, refusal = entry.keys.heartbeat(routing_key, body, mac, now)
        entry.on_heartbeat(routing_key, beat, refusal)

    async def publish_monitoring(self, cluster: str, routing_key: str, body: Any) -> None:
        entry = self._by_name[cluster]
        exchange = entry.exchanges.get("monitoring")
        if exchange is None:
            raise ConnectionError("not connected to RabbitMQ")
        message = json_message(body, persistent=False)
        if entry.keys is not None:
            message.headers[trust.MAC_HEADER] = entry.keys.mac(routing_key, message.body)
        await exchange.publish(message, routing_key, mandatory=False, timeout=5)

    async def publish_command(self, cluster: str, routing_key: str, body: Any) -> None:
        exchange = self._by_name[cluster].commands
        if exchange is None:
            raise ConnectionError("not connected to RabbitMQ")
        message = json_message(body, persistent=False, expiration=signing.WINDOW)
        await exchange.publish(message, routing_key, mandatory=True, timeout=5)

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class ClusterLink:
    """One cluster's side of the shared link (watchdog.ports.WatchdogLink)."""

    def __init__(self, shared: SharedLink, cluster: str) -> None:
        self._shared = shared
        self._cluster = cluster

    @property
    def ready(self) -> bool:
        return self._shared.ready

    async def publish_monitoring(self, routing_key: str, body: Any) -> None:
        await self._shared.publish_monitoring(self._cluster, routing_key, body)

    async def publish_command(self, routing_key: str, body: Any) -> None:
        await self._shared.publish_command(self._cluster, routing_key, body)


async def start_until_connected(link: SharedLink, stop: asyncio.Event) -> bool:
    """Retry the start every second until it works or `stop` is set; whether it works."""
    while not stop.is_set():
        try:
            await link.start()
            return True
        except Exception as error:
            log.warning("cannot reach RabbitMQ yet: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
    return False
