"""What this instance hears on its cluster's monitoring exchange, for the HA screen.

It binds an exclusive, auto-delete, server-named queue (`amq.gen-*`, the only queue name besides
the cluster's own that broker-setup lets an instance user create) to role changes, failover
steps and alerts, and keeps bounded windows: the last heartbeats of each instance, and the last
role changes, failover steps and alerts. Nothing here decides anything: it is what an operator
looks at. Heartbeats are not bound here: the peers' come from the heartbeat listener
(`take`, as received), this instance's own from its liveness once the broker confirmed them
(`own`). A queue of ours bound to our own heartbeats would hold their confirms, the master's
lease, for as long as the cluster takes to notice a frozen node the queue is left on
(entrypoints.amqp.heartbeats says more).

Why its own plain connection rather than the instance's robust `BrokerLink`: aio-pika's robust
queues name themselves `amq_<uuid>` on the client (so they can be re-declared after a
reconnect), which the least-privilege instance user may not create; and a server-named queue
dies with its connection anyway. So the loop below is the reconnect: when the connection is
lost it connects again, with backoff, and binds a new queue. It never declares the exchange
either (the instance's role tasks do, once HA is on): binding to an exchange that does not exist
yet fails, and the next attempt succeeds once it does; a standalone instance, which has nothing
on monitoring, opens no connection at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from shadowline.adapters.amqp_nodes import Nodes
from shadowline.adapters.broker import Names
from shadowline.domain import trust

log = logging.getLogger(__name__)

HEARTBEATS_KEPT = 20  # per instance
# Anyone who may publish on monitoring could invent instance names: keep the most recently heard
# ones only (a cluster has two instances; several watchdogs publish no heartbeats).
INSTANCES_KEPT = 16
EVENTS_KEPT = 50  # role.changed, failover.*, alert.*
ANNOUNCEMENT = "failover.watchdog"  # each watchdog's view, every takeover delay: not an event
EVENT_PREFIXES = ("role.changed", "failover.", "alert.")
BINDINGS = ("role.changed", "failover.*", "alert.*")  # what the queue hears of monitoring
MALFORMED_LOG_EVERY = 10.0  # seconds: a flood of bad messages logs one line per interval
# Between attempts to listen: 0.5 s, doubling up to 10 s; a link that was up and is lost starts
# again at 0.5 s. While HA is off (`active` false) it looks again every second.
BACKOFF_FIRST, BACKOFF_MAX, IDLE_CHECK = 0.5, 10.0, 1.0


class _Lost(Exception):
    """Raised when a connection that was listening is lost: the next attempt comes soon."""


def _failed(error: BaseException) -> bool:
    # Not a cancellation (this task is being stopped), nor a link that was up and is lost.
    return isinstance(error, Exception) and not isinstance(error, _Lost)


@dataclass(frozen=True, slots=True)
class Heard:
    """One monitoring message as received: when (UTC), its routing key and its JSON body."""

    received_at: datetime
    routing_key: str
    body: dict[str, Any]


class MonitoringFeed:
    def __init__(
        self,
        amqp_url: str,
        names: Names,
        connection_name: str,
        active: Callable[[], bool] = lambda: True,
        secret: str | None = None,
    ) -> None:
        self._nodes = Nodes(amqp_url)  # each attempt tries the node after the one lost first
        self._secret = secret  # without it nothing can be authenticated, so nothing is shown
        self._names = names
        self._connection_name = connection_name
        self._active = active
        self.heartbeats: dict[str, deque[Heard]] = {}
        self.events: deque[Heard] = deque(maxlen=EVENTS_KEPT)
        self.watchdogs: dict[str, Heard] = {}  # the last word of each watchdog heard
        self.connected = False
        self.received = 0
        self.malformed = 0
        self.rejected = 0  # not authenticated with the cluster's keys, or stale: never shown
        self._fresh = trust.Freshness()
        self._malformed_logged = 0.0

    # -- what the screen reads -------------------------------------------------------------------

    def latest_heartbeats(self) -> list[Heard]:
        """The last heartbeat of each instance heard, by instance name."""
        return [beats[-1] for _, beats in sorted(self.heartbeats.items()) if beats]

    def recent_heartbeats(self, count: int) -> list[Heard]:
        """The last `count` heartbeats of all instances, newest first."""
        merged = sorted(
            (beat for beats in self.heartbeats.values() for beat in beats),
            key=lambda heard: heard.received_at,
            reverse=True,
        )
        return merged[:count]

    def recent_events(self) -> list[Heard]:
        return list(reversed(self.events))

    def watchdogs_seen(self) -> list[Heard]:
        """The last message (announcement or failover step) of each watchdog, by name."""
        return [self.watchdogs[name] for name in sorted(self.watchdogs)]

    # -- receiving -------------------------------------------------------------------------------

    def take(self, routing_key: str, body: bytes, mac: object = None) -> None:
        """Keep one message if the screen shows its kind and it is authentic (anyone with a
        broker login could otherwise paint a forged failover on the screen); count the rest."""
        if not self._authentic(routing_key, body, mac):
            self.rejected += 1
            return
        try:
            doc = orjson.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            heard = Heard(datetime.now(UTC), routing_key, doc)
            if routing_key.startswith("heartbeat."):
                self._keep_heartbeat(heard)
            elif routing_key.startswith(EVENT_PREFIXES):
                self._note_watchdog(heard)
                if routing_key != ANNOUNCEMENT:
                    self.events.append(heard)
            self.received += 1
        except (orjson.JSONDecodeError, ValueError, KeyError) as error:
            self.malformed += 1
            now = time.monotonic()
            if now - self._malformed_logged >= MALFORMED_LOG_EVERY:
                self._malformed_logged = now
                log.warning(
                    "ignored a malformed monitoring message on %s (%s); %d so far",
                    routing_key,
                    error,
                    self.malformed,
                )

    def own(self, beat: dict[str, Any]) -> None:
        """One of this instance's own heartbeats, confirmed by the broker."""
        self._keep_heartbeat(Heard(datetime.now(UTC), f"heartbeat.{beat['instance']}", beat))

    def _keep_heartbeat(self, heard: Heard) -> None:
        instance = heard.body["instance"]
        if not isinstance(instance, str):
            raise ValueError("heartbeat without an instance name")
        beats = self.heartbeats.pop(instance, None) or deque(maxlen=HEARTBEATS_KEPT)
        beats.append(heard)
        self.heartbeats[instance] = beats  # last heard goes last: the oldest go first
        while len(self.heartbeats) > INSTANCES_KEPT:
            del self.heartbeats[next(iter(self.heartbeats))]

    def _note_watchdog(self, heard: Heard) -> None:
        name = heard.body.get("watchdog")
        if not heard.routing_key.startswith("failover.") or not isinstance(name, str):
            return
        kept = self.watchdogs.get(name)
        if kept is not None and not _later(heard.body.get("at"), kept.body.get("at")):
            return  # a replay (or a copy) of what was heard: it says nothing newer of it
        self.watchdogs.pop(name, None)
        self.watchdogs[name] = heard  # last heard goes last: the oldest go first
        while len(self.watchdogs) > INSTANCES_KEPT:  # names anyone who may publish could invent
            del self.watchdogs[next(iter(self.watchdogs))]

    def _authentic(self, routing_key: str, body: bytes, mac: object) -> bool:
        """MAC'd with the cluster's keys, and fresh: a genuine message replayed long after
        (a months-old `failover.promoting`) must not show as news. A message whose MAC holds
        but that is no JSON object passes here, to be counted as malformed."""
        if not self._secret or len(body) > trust.MAX_MESSAGE:
            return False
        cluster, now = self._names.cluster, time.time()
        if not trust.message_valid(self._secret, cluster, routing_key, body, mac):
            return False
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(doc, dict):
            return True
        if routing_key.startswith("heartbeat."):
            found, _ = trust.heartbeat_refusal(
                self._secret, cluster, routing_key, body, mac, self._fresh, now
            )
            return found is not None
        at = doc.get("at")
        return isinstance(at, int | float) and abs(now - at) <= trust.WINDOW

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.take(
            message.routing_key or "", message.body, (message.headers or {}).get(trust.MAC_HEADER)
        )

    # -- the connection --------------------------------------------------------------------------

    async def run(self) -> None:
        """Listen until cancelled, connecting again (with backoff) whenever the link is lost."""
        while True:
            if not self._active():
                await asyncio.sleep(IDLE_CHECK)
                continue
            retrying = AsyncRetrying(
                retry=retry_if_exception(_failed),
                wait=wait_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX),
                before_sleep=self._waiting,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._listen_while_active()
            except _Lost:
                await asyncio.sleep(BACKOFF_FIRST)  # it was up: a fresh loss starts the backoff

    async def _listen_while_active(self) -> None:
        """One attempt: nothing while HA is off (returns), else listen until the link is lost."""
        if not self._active():
            return
        await self._listen_once()
        raise _Lost()

    @staticmethod
    def _waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("monitoring feed: %s; again in %.1fs", error or type(error), delay)

    async def _listen_once(self) -> None:
        """Connect, bind a server-named queue (BINDINGS), consume; return once the link is lost."""
        lost = asyncio.Event()
        connection: AbstractConnection = await self._nodes.connect(
            per_node=10, client_properties={"connection_name": self._connection_name}
        )
        try:
            connection.close_callbacks.add(lambda *_: lost.set())
            channel = await connection.channel()
            channel.close_callbacks.add(lambda *_: lost.set())
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            for pattern in BINDINGS:
                await queue.bind(self._names.monitoring, pattern)
            await queue.consume(self._on_message, no_ack=True)
            self.connected = True
            log.info("monitoring feed listening on %s (queue %s)", self._names.monitoring, queue)
            await lost.wait()
            log.warning("monitoring feed: connection to RabbitMQ lost")
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.close())


def _later(at: object, than: object) -> bool:
    """Whether the signed time `at` is after `than` (both as the messages say)."""
    numbers = (int, float)
    if not isinstance(at, numbers) or isinstance(at, bool):
        return False
    return not isinstance(than, numbers) or isinstance(than, bool) or at > than
