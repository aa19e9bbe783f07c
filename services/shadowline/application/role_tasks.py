"""The bodies of the role tasks the supervisor runs; the composition root binds each one to its
collaborators (functools.partial) and hands the supervisor one factory per name.

Each takes `first` (started with the process rather than after a role change) as its only
positional argument, as `supervisor.RoleTask` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from shadowline.application.monitoring import Monitor
from shadowline.application.ports.broker import FeedControl
from shadowline.application.relay import Relay
from shadowline.application.replica import Replicator
from shadowline.application.supervisor import RoleTask, Running, retrying
from shadowline.domain import alerting

log = logging.getLogger(__name__)


class Broker(Protocol):
    async def start(self) -> None: ...

    async def replication_queue(self, shadow: str) -> Any: ...

    async def delete_replication_queue(self, shadow: str) -> None: ...


class Closing(Protocol):
    async def close(self) -> None: ...


async def consuming(
    first: bool, *, broker: Broker, what: str, consume: Callable[[], Awaitable[Any]]
) -> None:
    """Connect to RabbitMQ, then consume (heartbeats, config commands), both retried."""
    await retrying("connecting to RabbitMQ", broker.start)
    await retrying(what, consume)


async def heartbeats(first: bool, *, broker: Broker, liveness: Any) -> None:
    await retrying("connecting to RabbitMQ", broker.start)
    await retrying("listening to heartbeats", liveness.listen)
    await liveness.run()


async def lease(first: bool, *, failover: Any) -> None:
    # Started with the process (not by a promotion): check for a newer epoch before writing.
    await failover.watch_lease(check_first=first)


async def peer_watch(
    first: bool, *, ha: Any, position: Callable[[], int], monitor: Monitor
) -> None:
    """Alert when the confirmed shadow is lost or lags, and resolve it when that clears (rules
    in domain.alerting); a removed shadow, or this instance no longer master, clears both."""
    settings = ha.settings
    watch = alerting.Watch()
    try:
        while True:
            await asyncio.sleep(settings.heartbeat_interval)
            try:
                shadow = (await ha.status()).get("shadow")
            except Exception as error:  # the database away: look again next time, never die
                log.warning("shadow watch: no status: %s", error)
                continue
            if not shadow:
                _clear_watch(monitor, "no shadow is confirmed any more")
                watch = alerting.Watch()
                continue
            seen = alerting.Observation(
                master_position=position(),
                shadow=shadow["instance"],
                shadow_state=shadow["state"],
                shadow_position=shadow["position"],
            )
            watch, alerts, cleared = alerting.observe(
                watch, seen, time.monotonic(), lag_limit=settings.lag_alert_seconds
            )
            for done in cleared:
                monitor.resolve(done.name, done.sentence)
            for found in alerts:
                monitor.raise_alert(found)
    finally:
        if ha.role.role != "master":  # a role change, not this process stopping
            _clear_watch(monitor, f"{settings.instance} is {ha.role.shown} now, not master")


def _clear_watch(monitor: Monitor, sentence: str) -> None:
    for name in (alerting.AlertName.SHADOW_LOST, alerting.AlertName.LAG):
        monitor.resolve(name, sentence)


async def relay(first: bool, *, broker: Broker, ha: Any, new_relay: Callable[[], Relay]) -> None:
    await retrying("connecting to RabbitMQ", broker.start)
    shadow = ha.record.shadow_instance if ha.record else None
    if shadow:  # declared by the master too, so events are kept while the shadow is away
        await retrying("declaring the replication queue", lambda: broker.replication_queue(shadow))
    await retrying("relay", new_relay().run)


async def replica(
    first: bool,
    *,
    broker: Broker,
    ha: Any,
    instance: str,
    replicas: Running[Replicator],
    new_replica: Callable[[], tuple[Replicator, FeedControl, Closing]],
) -> None:
    """The shadow's side: report, bootstrap, consume, apply and backfill, in that order; the
    reporter runs throughout. On the way out (a promotion, a removal) everything stops; the
    replicator is `replicas.current` meanwhile (for /ha, the /shadow probe, a promotion)."""
    replicator, feed, peer = new_replica()
    try:
        with replicas.holding(replicator):
            await _replicate(replicator, feed, broker)
    finally:  # stopped (cancelled) as often as not
        await peer.close()
        if ha.role.role == "master":
            # Promoted: its own queue would only collect its own events from now on. A master
            # declares it again for this instance if it ever becomes a shadow.
            with contextlib.suppress(Exception):
                await broker.delete_replication_queue(instance)


async def _replicate(replicator: Replicator, feed: FeedControl, broker: Broker) -> None:
    reporter = asyncio.create_task(replicator.run_reporter(), name="replica-reporter")
    applier: asyncio.Task[Any] | None = None
    try:
        await retrying("connecting to RabbitMQ", broker.start)
        await retrying("declaring the replication queue", feed.declare)
        await replicator.confirmed.wait()
        await retrying("the first report to the master", replicator.report)
        await retrying("bootstrap from the master's image", replicator.bootstrap)
        applier = asyncio.create_task(
            retrying("applying replicated events", replicator.run_applier)
        )
        await retrying("consuming the replication queue", feed.consume)
        await retrying("history backfill", replicator.backfill)
        await applier
    finally:
        for task in (reporter, applier):
            if task is not None:
                task.cancel()
        await asyncio.gather(reporter, *([applier] if applier else []), return_exceptions=True)
        await feed.stop()


def role_tasks(
    *,
    instance: str,
    broker: Broker,
    ha: Any,
    liveness: Any,
    failover: Any,
    monitor: Monitor,
    position: Callable[[], int],
    promote: RoleTask,
    config_commands: Callable[[], Awaitable[Any]],
    new_relay: Callable[[], Relay],
    new_replica: Callable[[], tuple[Replicator, FeedControl, Closing]],
    replicas: Running[Replicator],
) -> dict[str, RoleTask]:
    """One factory per role task (supervisor.wanted_tasks says which run in which role); the
    relay, the replicator and the consumers come built from the composition root."""
    return {
        "heartbeats": partial(heartbeats, broker=broker, liveness=liveness),
        "commands": promote,
        "lease": partial(lease, failover=failover),
        "config-commands": partial(
            consuming, broker=broker, what="consuming config commands", consume=config_commands
        ),
        "peer-watch": partial(peer_watch, ha=ha, position=position, monitor=monitor),
        "relay": partial(relay, broker=broker, ha=ha, new_relay=new_relay),
        "replica": partial(
            replica,
            broker=broker,
            ha=ha,
            instance=instance,
            replicas=replicas,
            new_replica=new_replica,
        ),
    }
