"""Heartbeats, the master's lease, and what this instance hears of the others.

Every instance publishes `heartbeat.<instance>` on the monitoring exchange each interval, as
transient messages that expire. A master's heartbeats are published with confirms: the last
confirmation is its lease. Without one for `lease` seconds it fences itself (no write is
acknowledged), well before a watchdog may act (lease + margin < takeover delay, checked at
start). It also hears everyone's heartbeats, so it learns of a newer epoch: the consumer
(entrypoints.amqp.heartbeats) hands it only authenticated, fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from shadowline.application.ports.ha import HeartbeatPublisher
from shadowline.settings import Settings

log = logging.getLogger(__name__)


# Consumes the cluster's heartbeats, handing each authentic one of another instance on.
Listen = Callable[[Callable[[dict[str, Any]], None]], Awaitable[None]]


async def _hear_nothing(heard: Callable[[dict[str, Any]], None]) -> None:
    pass


async def _follow_nobody() -> None:
    await asyncio.Event().wait()


async def _always_usable() -> bool:
    return True


RECONNECT_POLL = 0.02  # seconds between two looks at a link that is reconnecting


class Liveness:
    def __init__(
        self,
        settings: Settings,
        broker: HeartbeatPublisher,
        describe: Callable[[], dict[str, Any]],
        *,
        listen: Listen = _hear_nothing,
        follow: Callable[[], Coroutine[Any, Any, None]] = _follow_nobody,
        confirmed: Callable[[dict[str, Any]], None] = lambda beat: None,
        usable: Callable[[], Awaitable[bool]] = _always_usable,
    ) -> None:
        self._settings = settings
        self._listen = listen
        self._follow = follow  # keeps the listener bound to the peers' heartbeats, for ever
        self._on_confirmed = confirmed  # each of our heartbeats the broker confirmed
        self._usable = usable  # the instance's database answers and takes writes (probed)
        self._boot = secrets.token_hex(8)  # this run: a replayed heartbeat of an older one is stale
        self._broker = broker
        self._describe = describe
        self._seq = 0
        self.confirmed_at: float | None = None  # monotonic time of the last confirmed heartbeat
        self.connected_at: float | None = (
            None  # since when heartbeats are confirmed without a break
        )
        self._confirmed = asyncio.Event()
        self.heard: dict[str, tuple[float, dict[str, Any]]] = {}  # others' last heartbeats

    def lease_valid(self, now: float | None = None) -> bool:
        if self.confirmed_at is None:
            return False
        return (
            now if now is not None else time.monotonic()
        ) - self.confirmed_at <= self._settings.lease

    def newest_epoch_heard(self, within: float) -> tuple[int, dict[str, Any] | None]:
        """The highest epoch any other instance claimed as master within `within` seconds."""
        now = time.monotonic()
        best: tuple[int, dict[str, Any] | None] = (0, None)
        for at, beat in self.heard.values():
            if (
                now - at <= within
                and beat.get("role") in ("master", "fenced")
                and int(beat["epoch"]) > best[0]
            ):
                best = (int(beat["epoch"]), beat)
        return best

    def heartbeat(self) -> dict[str, Any]:
        self._seq += 1
        return {
            **self._describe(),
            "cluster": self._settings.cluster,
            "url": self._settings.public_url,
            "seq": self._seq,
            "boot": self._boot,
            "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "interval": self._settings.heartbeat_interval,
        }

    async def beat_once(self) -> bool:
        """Publish one heartbeat and wait for the broker's confirm (at most one interval, or a
        quarter of the lease if that is shorter); none while the database is unusable.

        A master whose confirm does not come over a connection that is up, from a node that
        sent nothing at all for half the lease, is on a node that stopped answering with its
        TCP connection open (frozen, partitioned, its packets dropped): the link leaves it for
        the next node at once, within the lease, where waiting for AMQP heartbeats to notice
        would take seconds and cost the lease, and a failover with it."""
        interval = self._settings.heartbeat_interval
        # A node that confirms nothing for a quarter of the lease is left: the next node then
        # has the rest of the lease to connect, restore and confirm (a confirm takes ms).
        within = min(interval, self._settings.lease / 4)
        if not await self._usable():
            # An instance that cannot use its database cannot do its role: a master that kept
            # its lease would answer no write and yet hold off the failover. No heartbeat, so
            # its lease runs out and the watchdog hears it gone.
            self.connected_at = None
            return False
        beat = self.heartbeat()
        connected = self._broker.ready
        try:
            await asyncio.wait_for(
                self._broker.publish_monitoring(
                    f"heartbeat.{self._settings.instance}", beat, ttl=max(1.0, 3 * interval)
                ),
                timeout=within,
            )
        except Exception as error:
            log.debug("heartbeat %d not confirmed: %s", beat["seq"], error)
            self.connected_at = None
            # Only a master has a lease to save (or, fenced for want of one, to win back); a
            # node silent for half of it is frozen, not slow (a live node sends others'
            # heartbeats and confirms all the while).
            leased = beat.get("role") in ("master", "fenced")
            if connected and isinstance(error, TimeoutError) and leased:
                await self._leave_if_silent(beat["seq"], within)
            return False
        now = time.monotonic()
        self.connected_at = self.connected_at or now
        self.confirmed_at = now
        self._confirmed.set()
        self._on_confirmed(beat)
        return True

    async def _leave_if_silent(self, seq: int, within: float) -> None:
        """Leave the node once nothing came from it for half the lease: now, or as soon as that
        is so (the next beat's timeout would come up to an interval later, and the lease with
        it: the watchdog's takeover delay counts from the last heartbeat it heard). Unless it
        answers a request: a live node whose confirm waits on a queue of another node (that
        one frozen) is no better left for a third, where the confirm would wait the same."""
        silent = self._settings.lease / 2
        quiet = self._broker.quiet()
        if quiet is not None and quiet < silent:
            await asyncio.sleep(silent - quiet)
        quiet = self._broker.quiet()
        if quiet is None or quiet < silent or await self._broker.answers(self._settings.lease / 8):
            return
        why = f"heartbeat {seq} not confirmed within {within:g} s and nothing heard from the node"
        self._broker.abandon_node(f"{why} for {silent:g} s, nor an answer", silent)

    async def wait_lease(self, within: float) -> bool:
        """Wait (at most `within` s) until a confirmed heartbeat gives this instance a lease."""
        if self.lease_valid():
            return True
        self._confirmed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._confirmed.wait(), within)
        return self.lease_valid()

    async def run(self) -> None:
        """Beat every interval, and follow who the peers are, both until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow(), name="heartbeat-bindings")
            await self._beat()

    async def _beat(self) -> None:
        interval = self._settings.heartbeat_interval
        while True:
            started = time.monotonic()
            if self._broker.ready and await self.beat_once():
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
                continue
            # Not confirmed (the node was lost, or left as stalled): beat again as soon as the
            # link is back on a node, not a whole interval later, for the lease is running out;
            # a tenth of an interval apart at least, should publishing fail at once for good.
            await asyncio.sleep(interval / 10)
            until = started + interval
            # The link has no "connected" signal (aio-pika reconnects underneath it): polled.
            while not self._broker.ready and time.monotonic() < until:  # noqa: ASYNC110
                await asyncio.sleep(RECONNECT_POLL)

    async def listen(self) -> None:
        """Connect the heartbeats' own link, and hear the other instances' heartbeats."""
        await self._broker.start()
        await self._listen(self.hear)

    def hear(self, beat: dict[str, Any]) -> None:
        """Another instance's authentic heartbeat arrived."""
        self.heard[str(beat["instance"])] = (time.monotonic(), beat)
