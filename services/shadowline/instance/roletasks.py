"""Starts and stops the broker-facing work to match the instance's role.

master with a confirmed shadow: the relay. shadow: the replication reporter, bootstrap,
consumer, applier and history backfill. standalone: nothing. Each piece retries on its own
(with backoff) when the broker, the peer or the database is away, and never crash-loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from shadowline.adapters.broker import BrokerLink
from shadowline.adapters.store import EventStore
from shadowline.domain.errors import ShadowlineError
from shadowline.instance.ha import HaService
from shadowline.instance.metrics import Metrics
from shadowline.instance.relay import Relay
from shadowline.instance.replica import Replicator
from shadowline.instance.writer import Writer

log = logging.getLogger(__name__)


async def _retrying(name: str, work: Callable[[], Awaitable[Any]], *, limit: float = 5.0) -> Any:
    """Run `work` until it succeeds, backing off after each failure (cancellation stops it)."""
    delay = 0.1
    while True:
        try:
            return await work()
        except (ShadowlineError, OSError, ConnectionError, TimeoutError, RuntimeError) as error:
            log.warning("%s failed, retrying in %.1fs: %s", name, delay, error)
        except Exception as error:
            log.exception("%s failed unexpectedly, retrying in %.1fs: %s", name, delay, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, limit)


class RoleTasks:
    def __init__(
        self,
        *,
        instance: str,
        ha: HaService,
        broker: BrokerLink,
        store: EventStore,
        writer: Writer,
        metrics: Metrics,
    ) -> None:
        self._instance = instance
        self._ha = ha
        self._broker = broker
        self._store = store
        self._writer = writer
        self._metrics = metrics
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def alert(self, name: str, message: str, details: dict[str, Any]) -> None:
        """Log an alert and publish it on monitoring as alert.<name> (best effort)."""
        log.warning("ALERT %s: %s %s", name, message, details or "")
        self._metrics.alerts.labels(name).inc()
        body = {"alert": name, "instance": self._instance, "message": message, "details": details}
        task = asyncio.create_task(self._publish_alert(name, body))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_alert(self, name: str, body: dict[str, Any]) -> None:
        try:
            if self._broker.ready:
                await self._broker.publish_monitoring(f"alert.{name}", body)
        except Exception as error:  # monitoring is best effort; the log line above stays
            log.debug("alert %s not published: %s", name, error)

    def _wanted(self) -> set[str]:
        record = self._ha.record
        role = self._ha.role.role
        if role == "master" and record is not None and record.shadow_state == "confirmed":
            return {"relay"}
        if role == "shadow":
            return {"replica"}
        return set()

    async def reconcile(self) -> None:
        wanted = self._wanted()
        for name in list(self._running):
            if name not in wanted:
                task = self._running.pop(name)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.info("stopped %s", name)
        for name in wanted - self._running.keys():
            work = self._relay if name == "relay" else self._replica
            self._running[name] = asyncio.create_task(work(), name=name)
            log.info("started %s", name)

    async def stop(self) -> None:
        for task in [*self._running.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._background, return_exceptions=True)
        self._running.clear()
        await self._broker.close()

    async def _relay(self) -> None:
        await _retrying("connecting to RabbitMQ", self._broker.start)
        shadow = self._ha.record.shadow_instance if self._ha.record else None
        if shadow:  # declared by the master too, so events are kept while the shadow is away
            await _retrying(
                "declaring the replication queue", lambda: self._broker.replication_queue(shadow)
            )
        relay = Relay(self._store, self._writer, self._broker.exchanges["events"])
        await _retrying("relay", relay.run)

    async def _replica(self) -> None:
        record = self._ha.record
        assert record is not None and record.master_url is not None
        peer = self._ha.peer(record.master_url)
        replica = Replicator(
            writer=self._writer,
            store=self._store,
            peer=peer,
            alert=self.alert,
            on_applied=self._metrics.observe_replicated,
        )
        self._ha.replica = replica
        reporter = asyncio.create_task(replica.run_reporter(), name="replica-reporter")
        applier: asyncio.Task[Any] | None = None
        try:
            await _retrying("connecting to RabbitMQ", self._broker.start)
            queue = await _retrying(
                "declaring the replication queue",
                lambda: self._broker.replication_queue(self._instance),
            )
            await replica.confirmed.wait()
            await _retrying("the first report to the master", replica.report)
            await _retrying("bootstrap from the master's image", replica.bootstrap)
            applier = asyncio.create_task(
                _retrying("applying replicated events", replica.run_applier)
            )
            await _retrying("consuming the replication queue", lambda: replica.consume(queue))
            await _retrying("history backfill", replica.backfill)
            await applier
        finally:
            for task in (reporter, applier):
                if task is not None:
                    task.cancel()
            await asyncio.gather(reporter, *([applier] if applier else []), return_exceptions=True)
            self._ha.replica = None
            await peer.close()
