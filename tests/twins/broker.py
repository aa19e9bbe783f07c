"""An in-memory twin of adapters.broker.BrokerLink's publishing side: what it was asked to
publish, and the broker's confirms, which a test gives, withholds or refuses.

A publish returns once "the broker" confirmed it, as BrokerLink's do (a master's lease rests on
its heartbeat's confirm). `hold_confirms` keeps publishes waiting for their confirm (`waiting`
says one is); `refuse_confirms` makes them fail as an unreachable broker does. Every confirmed
message is in `published`; nothing unconfirmed is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from shadowline.adapters.broker import Names
from shadowline.domain import trust
from shadowline.domain.events import Event, envelope


@dataclass(frozen=True, slots=True)
class Published:
    exchange: str  # "monitoring", "events", "commands" or "reply"
    routing_key: str
    body: Any
    ttl: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)


class InMemoryBroker:
    def __init__(self, cluster: str = "test", secret: str | None = None) -> None:
        self.names = Names(cluster)
        self._secret = secret
        self.connected = False
        self.published: list[Published] = []
        self.attempts = 0  # publishes asked for, confirmed or not
        self.waiting = asyncio.Event()  # a publish waits for its confirm
        self._confirms: asyncio.Event | None = None
        self._refusal: Exception | None = None

    # -- what a test controls ----------------------------------------------------------------

    def hold_confirms(self) -> None:
        self._confirms = asyncio.Event()

    def give_confirms(self) -> None:
        if self._confirms is not None:
            self._confirms.set()
        self._confirms = None

    def refuse_confirms(self, error: Exception | None = None) -> None:
        """Publishes fail from now on (None: they are confirmed again)."""
        self._refusal = error

    def on(self, exchange: str, prefix: str = "") -> list[Published]:
        return [
            p for p in self.published if p.exchange == exchange and p.routing_key.startswith(prefix)
        ]

    @property
    def node(self) -> str | None:
        """The broker node connected to, as BrokerLink.node says it."""
        return "127.0.0.1:5672" if self.connected else None

    @property
    def heartbeats(self) -> list[Any]:
        return [p.body for p in self.on("monitoring", "heartbeat.")]

    # -- BrokerLink's ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.connected

    def abandon_node(self, why: str, silent: float) -> bool:
        """A broker in memory has no node to leave for another."""
        return False

    def quiet(self) -> float | None:
        return None

    async def answers(self, within: float) -> bool:
        return True

    async def start(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def _confirm(self, published: Published) -> None:
        self.attempts += 1
        if not self.connected:
            raise ConnectionError("not connected to RabbitMQ")
        gate = self._confirms
        if gate is not None:
            self.waiting.set()
            try:
                await gate.wait()
            finally:
                self.waiting.clear()
        if self._refusal is not None:
            raise self._refusal
        self.published.append(published)

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        headers: dict[str, Any] = {}
        if self._secret:
            raw = orjson.dumps(body)
            mac = trust.message_mac(self._secret, self.names.cluster, routing_key, raw)
            headers[trust.MAC_HEADER] = mac
        await self._confirm(Published("monitoring", routing_key, body, ttl, headers))

    async def publish_event(self, event: Event, confirm_within: float) -> None:
        published = Published("events", event.routing_key, envelope(event))
        await asyncio.wait_for(self._confirm(published), confirm_within)

    async def publish_command(self, routing_key: str, body: Any) -> None:
        await self._confirm(Published("commands", routing_key, body))

    async def publish_reply(self, reply_to: str, correlation_id: str | None, body: Any) -> None:
        headers = {"correlation_id": correlation_id}
        await self._confirm(Published("reply", reply_to, body, None, headers))
