"""Starts and stops the broker-facing work to match the instance's role.

master with a confirmed shadow: the relay and the shadow's watch (lost, lag). shadow: the replication reporter, bootstrap,
consumer, applier and history backfill. standalone: nothing. Each piece retries on its own
(with backoff) when the broker, the peer or the database is away, and never crash-loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import orjson
from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import BrokerLink
from shadowline.adapters.store import EventStore
from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.application.liveness import Liveness
from shadowline.application.metrics import Metrics
from shadowline.application.relay import Relay
from shadowline.application.replica import Replicator
from shadowline.application.writer import Writer
from shadowline.domain import alerting
from shadowline.domain.errors import Forbidden, ShadowlineError
from shadowline.domain.events import Event
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.config_commands import ConfigCommands

log = logging.getLogger(__name__)

CHANGES_EVERY = 0.25  # seconds between config.changed summaries
MAX_COMMAND = 64 * 1024  # bytes: a promote command is a few hundred


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
        catalog: Catalog,
    ) -> None:
        self._instance = instance
        self._catalog = catalog
        self._ha = ha
        self._broker = broker
        self._store = store
        self._writer = writer
        self._metrics = metrics
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._started = False
        self._reconciling = asyncio.Lock()
        self._changes: list[Event] = []
        self._throttle = alerting.Throttle()
        self._refusals = alerting.Throttle(every=10.0, burst=10)
        self.failover: Failover | None = None  # set by the composition root
        self.liveness: Liveness | None = None
        self.config_commands: ConfigCommands | None = None

    # -- monitoring ------------------------------------------------------------------------------

    def alert(self, name: str, message: str, details: dict[str, Any]) -> None:
        """Log an alert and publish it on monitoring as alert.<name> (best effort). Refused
        commands come from anyone who may publish: past a burst they are only counted."""
        self._metrics.alerts.labels(name).inc()
        if name == "rejected-command" and self._refusals.admit(name, time.monotonic()) is None:
            return
        log.warning("ALERT %s: %s %s", name, message, details or "")
        self.publish(f"alert.{name}", {"alert": name, "message": message, "details": details})

    def rejected(self, source: str, reason: str) -> None:
        """An input failed authentication: count it, and alert (throttled per source)."""
        self._metrics.rejected_messages.labels(source).inc()
        log.debug("rejected %s: %s", source, reason)
        count = self._throttle.admit(source, time.monotonic())
        if count is not None:
            details = {"source": source, "reason": reason, "count": count}
            self.alert("rejected-message", f"{source} rejected: {reason}", details)

    def publish(self, routing_key: str, body: dict[str, Any]) -> None:
        """Publish on monitoring in the background; monitoring never blocks the work."""
        doc = {"instance": self._instance, "at": time.time(), **body}
        task = asyncio.create_task(self._publish(routing_key, doc))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish(self, routing_key: str, body: dict[str, Any]) -> None:
        try:
            if self._broker.ready:
                await self._broker.publish_monitoring(routing_key, body)
        except Exception as error:  # best effort: the log line stays
            log.debug("%s not published: %s", routing_key, error)

    def config_changed(self, events: list[Event]) -> None:
        """Collect committed client writes; a summary goes out at most every CHANGES_EVERY s
        (one message per group-commit batch would cost the master more than the writes)."""
        if self._ha.role.role != "master":
            return
        if not self._changes:
            asyncio.get_running_loop().call_later(CHANGES_EVERY, self._flush_changes)
        self._changes.extend(events)

    def _flush_changes(self) -> None:
        batch, self._changes = self._changes, []
        events = [e for e in batch if e.kind is not None]
        if not events:
            return
        changes = [
            {"kind": e.kind, "name": e.name, "version": e.version, "type": e.type,
             "actor": e.metadata.get("actor")}
            for e in events[:100]
        ]  # fmt: skip
        self.publish(
            "config.changed",
            {
                "epoch": batch[-1].epoch,
                "from_position": batch[0].position,
                "to_position": batch[-1].position,
                "count": len(events),
                "changes": changes,
            },
        )

    # -- reconciling tasks with the role ---------------------------------------------------------

    def _wanted(self) -> set[str]:
        record = self._ha.record
        role = self._ha.role.role
        wanted: set[str] = set()
        if role != "standalone":
            wanted |= {"heartbeats", "commands"}
        if role == "master":
            wanted.add("lease")
            # Only a master: a standalone instance may be a shadow that has not joined yet, and
            # what it applied would be replaced by its master's image (and the reply a lie).
            if self.config_commands is not None:
                wanted.add("config-commands")
            # A master fenced at start may be about to quarantine what it holds: publish nothing
            # until it knows no newer epoch exists.
            checking = (self._ha.role.fenced or "").startswith("starting")
            if record is not None and record.shadow_state == "confirmed" and not checking:
                wanted |= {"relay", "peer-watch"}
        if role == "shadow":
            wanted.add("replica")
        return wanted

    async def changed(self) -> None:
        """The role changed: reconcile in a task of its own, since the caller may be one of the
        tasks that the change stops (a lease watcher that found a newer master)."""
        task = asyncio.create_task(self._reconcile_locked())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if asyncio.current_task() not in self._running.values():
            await asyncio.shield(task)

    async def _reconcile_locked(self) -> None:
        async with self._reconciling:
            await self.reconcile()

    async def reconcile(self) -> None:
        wanted = self._wanted()
        for name in list(self._running):
            if name not in wanted:
                task = self._running.pop(name)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                log.info("stopped %s", name)
        first = not self._started
        work: dict[str, Callable[[], Awaitable[Any]]] = {
            "relay": self._relay,
            "replica": self._replica,
            "heartbeats": self._heartbeats,
            "commands": self._commands,
            "lease": partial(self._lease, first),
            "config-commands": self._config_commands,
            "peer-watch": self._peer_watch,
        }
        for name in wanted - self._running.keys():
            self._running[name] = asyncio.ensure_future(work[name]())
            log.info("started %s", name)
        self._started = True

    async def stop(self) -> None:
        for task in [*self._running.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._background, return_exceptions=True)
        self._running.clear()
        await self._broker.close()

    # -- the tasks -------------------------------------------------------------------------------

    async def _config_commands(self) -> None:
        assert self.config_commands is not None
        await _retrying("connecting to RabbitMQ", self._broker.start)
        await _retrying("consuming config commands", self.config_commands.run)

    async def _lease(self, first: bool) -> None:
        assert self.failover is not None
        # Started with the process (not by a promotion): check for a newer epoch before writing.
        await self.failover.watch_lease(check_first=first)

    async def _heartbeats(self) -> None:
        assert self.liveness is not None
        await _retrying("connecting to RabbitMQ", self._broker.start)
        await _retrying("listening to heartbeats", self.liveness.listen)
        await self.liveness.run()

    async def _commands(self) -> None:
        await _retrying("connecting to RabbitMQ", self._broker.start)
        queue = await _retrying(
            "declaring the command queue", lambda: self._broker.command_queue(self._instance)
        )
        await queue.consume(self._on_command, no_ack=True)
        await asyncio.Future()  # consume until cancelled

    async def _on_command(self, message: AbstractIncomingMessage) -> None:
        """Act on a promote command; refuse anything else with alert.rejected-command. The
        queue is exclusive and consumed without acks: a refused command is dropped, never
        returned, so it cannot come back (and has no delivery limit to reach)."""
        assert self.failover is not None
        routing_key = message.routing_key or ""
        try:
            command = self._promote_command(routing_key, message.body)
        except Forbidden as error:
            self._metrics.rejected(error)
            self._refused_command(routing_key, error)
            return
        try:
            await self.failover.promote(command, via=f"broker ({routing_key})")
        except Forbidden as error:  # promote counted and alerted it, with the command's id
            log.warning("command %s refused: %s", routing_key, error)
        except ShadowlineError as error:
            self._refused_command(routing_key, error)

    def _promote_command(self, routing_key: str, body: bytes) -> dict[str, Any]:
        """The promote command a delivery carries, else Forbidden. The queue gets whatever is
        routed `*.<instance>` (and whatever is sent to it by name on the default exchange), but
        only `promote.<instance>` with a body of type promote is a command this instance knows:
        the routing key must agree with the body, which alone is signed."""
        expected = f"promote.{self._instance}"
        if len(body) > MAX_COMMAND:
            raise Forbidden(f"unknown command {routing_key!r}: {len(body)} bytes, no command is")
        try:
            command = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise Forbidden(f"unknown command {routing_key!r}: not JSON ({error})") from error
        kind = command.get("type") if isinstance(command, dict) else type(command).__name__
        if routing_key != expected or kind != "promote":
            shown = repr(kind)[:60]  # the sender's words: bounded in the alert
            raise Forbidden(
                f"unknown command {routing_key!r} of type {shown}: only {expected} is taken here"
            )
        return cast(dict[str, Any], command)

    def _refused_command(self, routing_key: str, error: Exception) -> None:
        self.alert("rejected-command", f"command refused: {error}", {"routing_key": routing_key})

    async def _peer_watch(self) -> None:
        """Alert when the confirmed shadow is lost or lags (rules in domain.alerting)."""
        settings = self._ha.settings
        watch = alerting.Watch()
        while True:
            await asyncio.sleep(settings.heartbeat_interval)
            try:
                shadow = (await self._ha.status()).get("shadow")
            except Exception as error:  # the database away: look again next time, never die
                log.warning("shadow watch: no status: %s", error)
                continue
            if not shadow:
                continue
            seen = alerting.Observation(
                master_position=self._writer.position,
                shadow=shadow["instance"],
                shadow_state=shadow["state"],
                shadow_position=shadow["position"],
            )
            watch, alerts = alerting.observe(
                watch, seen, time.monotonic(), lag_limit=settings.lag_alert_seconds
            )
            for found in alerts:
                self.alert(found.name, found.message, found.details)

    async def _relay(self) -> None:
        await _retrying("connecting to RabbitMQ", self._broker.start)
        shadow = self._ha.record.shadow_instance if self._ha.record else None
        if shadow:  # declared by the master too, so events are kept while the shadow is away
            await _retrying(
                "declaring the replication queue", lambda: self._broker.replication_queue(shadow)
            )
        relay = Relay(
            self._store, self._writer, self._broker, on_cursor=self._metrics.observe_published
        )
        await _retrying("relay", relay.run)

    async def _replica(self) -> None:
        record = self._ha.record
        assert record is not None and record.master_url is not None
        peer = self._ha.peer(record.master_url, record.master_instance)
        replica = Replicator(
            writer=self._writer,
            store=self._store,
            peer=peer,
            alert=self.alert,
            secret=self._ha.secret(),
            cluster=self._ha.settings.cluster,
            catalog=self._catalog,
            rejected=self.rejected,
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
            await replica.stop_consuming()
            self._ha.replica = None
            await peer.close()
            if self._ha.role.role == "master":
                # Promoted: its own queue would only collect its own events from now on. A
                # master declares it again for this instance if it ever becomes a shadow.
                with contextlib.suppress(Exception):
                    await self._broker.delete_replication_queue(self._instance)
