"""Hearing the cluster's heartbeats: an exclusive, server-named queue bound to heartbeat.*,
consumed without acks (a heartbeat is worth nothing once the next one is due).

Only heartbeats authenticated with the cluster's heartbeat key and fresh (domain.trust) are
handed on: anyone with a broker login can publish, and a forged or replayed heartbeat must never
fence a master or send it to recover from an attacker's URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import heartbeat_in
from shadowline.domain import trust

Heard = Callable[[dict[str, Any]], None]


class HeartbeatBroker(Protocol):
    async def heartbeat_queue(self) -> Any: ...


class HeartbeatListener:
    def __init__(
        self,
        *,
        instance: str,
        cluster: str,
        secret: str | None,
        broker: HeartbeatBroker,
        rejected: Callable[[str, str], None] = lambda source, reason: None,
    ) -> None:
        self._instance = instance
        self._cluster = cluster
        self._secret = secret
        self._broker = broker
        self._rejected = rejected
        self._fresh = trust.Freshness()

    async def listen(self, heard: Heard) -> None:
        """Consume the cluster's heartbeats, handing every authentic one of another instance to
        `heard` (application.liveness.Liveness.hear)."""
        queue = await self._broker.heartbeat_queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.on_heartbeat(message, heard)

        await queue.consume(on_message, no_ack=True)

    def on_heartbeat(self, message: AbstractIncomingMessage, heard: Heard) -> None:
        routing_key = message.routing_key or ""
        if routing_key == f"heartbeat.{self._instance}":
            return  # our own (a forged one under our name changes nothing either)
        beat, refusal = heartbeat_in(message, self._secret, self._cluster, self._fresh)
        if beat is None:
            self._rejected("heartbeat", f"{routing_key}: {refusal}")
            return
        heard(beat)
