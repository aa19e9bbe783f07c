"""Hearing the other instances' heartbeats: an exclusive, server-named queue bound to
`heartbeat.<peer>` for each instance this one's HA record names, consumed without acks (a
heartbeat is worth nothing once the next one is due).

Never to `heartbeat.*`: that would route this instance's own heartbeats to its own queue too,
only to be dropped here. Worse, a master's lease is its heartbeats confirmed by the broker, and
RabbitMQ confirms a message once every queue it was routed to has it. After the master leaves a
broker node that froze (application.liveness), its old exclusive queues stay bound on that node
until the cluster notices the node is gone (net_ticktime: 5 to 60 s), and every one of its own
heartbeats routed there would wait that long for its confirm, past the lease: a failover for
want of hearing itself. So the bindings follow the HA record (a shadow joining, a promotion, a
rejoin), looked at every `FOLLOW_EVERY` seconds. Only a master that may write is that careful:
any other instance (a fenced master first: bootstrap.hearing.peers says why) is told `*` and
hears every instance's heartbeats, as all did before.

Only heartbeats authenticated with the cluster's heartbeat key and fresh (domain.trust) are
handed on: anyone with a broker login can publish, and a forged or replayed heartbeat must never
fence a master or send it to recover from an attacker's URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import Names, heartbeat_in
from shadowline.domain import trust

log = logging.getLogger(__name__)

Heard = Callable[[dict[str, Any]], None]
# Every authentic heartbeat of a peer as received (routing key, body, MAC): the HA screen's feed.
Tee = Callable[[str, bytes, object], None]

FOLLOW_EVERY = 0.1  # seconds between two looks at who the peers are (a fence binds `*`)
BIND_WITHIN = 5.0  # seconds a bind or unbind may take before it is tried again
# One word of a routing key, as Settings.instance: a name with `*` or `#` would widen a binding.
NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


class HeartbeatBroker(Protocol):
    async def heartbeat_queue(self, instances: Iterable[str] = ...) -> Any: ...


class HeartbeatListener:
    def __init__(
        self,
        *,
        instance: str,
        cluster: str,
        secret: str | None,
        broker: HeartbeatBroker,
        peers: Callable[[], Iterable[str | None]] = tuple,
        rejected: Callable[[str, str], None] = lambda source, reason: None,
        tee: Tee = lambda routing_key, body, mac: None,
    ) -> None:
        self._instance = instance
        self._exchange = Names(cluster).monitoring
        self._cluster = cluster
        self._secret = secret
        self._broker = broker
        self._peers = peers
        self._rejected = rejected
        self._tee = tee
        self._fresh = trust.Freshness()
        self._queue: Any = None
        self.bound: set[str] = set()  # the peers whose heartbeats the queue is bound to
        self._odd: set[str] = set()  # names refused last time (logged once)

    async def listen(self, heard: Heard) -> None:
        """Consume the peers' heartbeats, handing every authentic one to `heard`
        (application.liveness.Liveness.hear); `follow_peers` keeps the bindings."""
        self._queue, self.bound = await self._broker.heartbeat_queue(()), set()
        await self.bind_peers()

        async def on_message(message: AbstractIncomingMessage) -> None:
            self.on_heartbeat(message, heard)

        await self._queue.consume(on_message, no_ack=True)

    async def follow_peers(self) -> None:
        """Run for ever: bind the queue to the heartbeats of the instances the HA record names
        now, and unbind those it no longer names."""
        while True:
            await asyncio.sleep(FOLLOW_EVERY)
            try:
                await self.bind_peers()
            except Exception:  # it runs beside the heartbeats (Liveness.run): never end them
                log.exception("following the peers' heartbeats failed; again in %g s", FOLLOW_EVERY)

    def wanted(self) -> set[str]:
        """The peers to hear (`*`: every instance, this one's own heartbeats included)."""
        found = {p for p in self._peers() if p and p != self._instance}
        if "*" in found:
            return {"*"}
        odd = {p for p in found if not NAME.fullmatch(p)}
        if odd - self._odd:
            log.warning("heartbeats of %s: not a name of one routing-key word, not heard", odd)
        self._odd = odd
        return found - odd

    async def bind_peers(self) -> None:
        """One look: a bind or unbind that fails (the link reconnecting) is tried next time."""
        if self._queue is None:
            return
        wanted = self.wanted()
        for peer in sorted(wanted - self.bound):
            if await self._change(self._queue.bind, peer):
                self.bound.add(peer)
        for peer in sorted(self.bound - wanted):
            if await self._change(self._queue.unbind, peer):
                self.bound.discard(peer)

    async def _change(self, change: Callable[..., Any], peer: str) -> bool:
        try:
            await asyncio.wait_for(change(self._exchange, f"heartbeat.{peer}"), BIND_WITHIN)
        except Exception as error:  # the link away: the next look tries again
            log.debug("heartbeats of %s: %s failed: %r", peer, change.__name__, error)
            return False
        log.info("heartbeats of %s: %s", peer, "heard" if change.__name__ == "bind" else "no more")
        return True

    def on_heartbeat(self, message: AbstractIncomingMessage, heard: Heard) -> None:
        routing_key = message.routing_key or ""
        if routing_key == f"heartbeat.{self._instance}":
            return  # our own, were it ever routed here (a forged one changes nothing either)
        beat, refusal = heartbeat_in(message, self._secret, self._cluster, self._fresh)
        if beat is None:
            self._rejected("heartbeat", f"{routing_key}: {refusal}")
            return
        heard(beat)
        self._tee(routing_key, message.body, (message.headers or {}).get(trust.MAC_HEADER))
