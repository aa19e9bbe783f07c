"""One watchdog process watching one or more clusters over the broker and HTTP.

It hears heartbeats, ticks the pure decision functions of `domain.watchdog` every few tens of
milliseconds on a monotonic clock, probes masters directly, and sends signed promote commands.
Every decision is a logged sentence and a `failover.<step>` message on monitoring. It keeps no
state that matters across restarts: promotion is idempotent by epoch, and a restarted watchdog
waits one full takeover delay before it may act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import BrokerLink, Names, heartbeat_in
from shadowline.adapters.peer import PeerClient
from shadowline.domain import alerting, signing, trust
from shadowline.domain import watchdog as rules
from shadowline.domain.errors import ShadowlineError
from shadowline.settings import Settings
from shadowline.watchdog import http
from shadowline.watchdog.metrics import Seen, WatchdogMetrics

log = logging.getLogger("shadowline.watchdog")

TICK = 0.05


def _step(sentence: str) -> str:
    for word, step in (
        ("probing", "probing"),
        ("not promoting", "refused"),  # before "promoting", which it contains
        ("promoting", "promoting"),
        ("complete", "promoted"),
        ("cannot fail over", "refused"),
        ("no failover", "master-alive"),
        ("heard again", "master-alive"),
        ("sent again", "promoting"),
    ):
        if word in sentence:
            return step
    return "decision"


class ClusterWatch:
    def __init__(
        self,
        cluster: str,
        settings: Settings,
        name: str,
        allow_data_loss: bool,
        metrics: WatchdogMetrics | None = None,
    ) -> None:
        self.cluster = cluster
        self._settings = settings
        self._name = name
        self._allow_data_loss = allow_data_loss
        self._broker = BrokerLink(
            settings.amqp_url.get_secret_value(),
            Names(cluster),
            f"shadowline {name}",
            declare=("monitoring", "commands"),
            secret=settings.cluster_secret.get_secret_value() if settings.cluster_secret else None,
        )
        self.view = rules.View(cluster, started=time.monotonic())
        self._secret = (
            settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
        )
        self._fresh = trust.Freshness()
        self._throttle = alerting.Throttle()
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics = metrics or WatchdogMetrics(
            [cluster], lambda: [self.seen()], settings.takeover_delay
        )

    async def run(self) -> None:
        while True:
            try:
                await self._broker.start()
                queue = await self._broker.heartbeat_queue()
                await queue.consume(self._on_heartbeat, no_ack=True)
                break
            except Exception as error:
                log.warning("[%s] cannot reach RabbitMQ yet: %s", self.cluster, error)
                await asyncio.sleep(1)
        log.info(
            "[%s] watching (takeover delay %.1fs)", self.cluster, self._settings.takeover_delay
        )
        while True:
            await asyncio.sleep(TICK)
            self._apply(*rules.tick(self.view, time.monotonic(), self._settings.takeover_delay))

    @property
    def connected(self) -> bool:
        return self._broker.ready

    def seen(self) -> Seen:
        return Seen(self.cluster, self.view, self.connected)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._broker.close()

    def _on_heartbeat_doc(self, beat: dict[str, Any]) -> None:
        self.view = rules.observe(self.view, beat, time.monotonic())
        maintenance = (
            bool(beat.get("maintenance")) if beat.get("role") in ("master", "fenced") else None
        )
        if maintenance is not None and maintenance != self.view.maintenance:
            self.view = rules.replace_maintenance(self.view, maintenance)
            self._say(
                f"maintenance mode {'on' if maintenance else 'off'} (set on master {beat['instance']}): "
                f"automatic failover {'paused' if maintenance else 'resumed'}",
                "maintenance",
            )

    async def _on_heartbeat(self, message: AbstractIncomingMessage) -> None:
        """Only authenticated, fresh heartbeats count: a forged one must neither stop a failover
        (a fake master) nor start one, and a replayed one must not keep a dead master alive."""
        routing_key = message.routing_key or ""
        beat, refusal = heartbeat_in(message, self._secret, self.cluster, self._fresh)
        if beat is None:
            self._rejected("heartbeat", f"{routing_key}: {refusal}")
            return
        try:
            self._on_heartbeat_doc(beat)
        except (KeyError, ValueError, TypeError) as error:  # authentic, yet not what we expect
            log.warning("[%s] ignored a malformed heartbeat: %s", self.cluster, error)

    def _rejected(self, source: str, reason: str) -> None:
        self.metrics.rejected(self.cluster, source)
        count = self._throttle.admit(source, time.monotonic())
        if count is not None:  # logged and alerted at most once per source every 10 s
            log.info("[%s] rejected %s (%d): %s", self.cluster, source, count, reason)
            body = {
                "instance": self._name,
                "at": time.time(),
                "alert": "rejected-message",
                "message": f"{source} rejected by watchdog {self._name}: {reason}",
                "details": {"source": source, "reason": reason, "count": count},
            }
            self._spawn(self._publish("alert.rejected-message", body))

    def _apply(self, view: rules.View, actions: list[rules.Action], sentence: str | None) -> None:
        self.metrics.decided(self.cluster, self.view, view, sentence)
        self.view = view
        if sentence:
            self._say(sentence, _step(sentence))
        for action in actions:
            if isinstance(action, rules.Probe):
                self._spawn(self._probe(action))
            else:
                self._spawn(self._promote(action))

    def _say(self, sentence: str, step: str) -> None:
        log.info("[%s] %s", self.cluster, sentence)
        body = {
            "cluster": self.cluster,
            "watchdog": self._name,
            "step": step,
            "sentence": sentence,
            "at": time.time(),
        }
        self._spawn(self._publish(f"failover.{step}", body))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, routing_key: str, body: dict[str, Any]) -> None:
        try:
            await self._broker.publish_monitoring(routing_key, body)
        except Exception as error:  # monitoring is best effort; the log line stays
            log.debug("%s not published: %s", routing_key, error)

    async def _probe(self, probe: rules.Probe) -> None:
        limit = max(0.2, self._settings.takeover_delay / 4)
        answer: dict[str, Any] | None = None
        problem = ""
        # A signed probe whose answer must be authenticated: a fake instance at the master's URL
        # cannot pass for a live master (its answer fails, and so counts as no answer).
        client = PeerClient(
            probe.url,
            self._secret or "",
            self._name,
            cluster=self.cluster,
            peer=probe.instance,  # a genuine instance elsewhere (another cluster) is not it
            timeout=httpx.Timeout(limit),
            deadline=limit,  # a slow answer is no answer: the probe never outlasts this
            on_rejected=lambda reason: self._rejected("peer-answer", reason),
            max_answer=64 * 1024,
        )
        try:
            found = await client.call("GET", "/health")
            if isinstance(found, dict):
                answer = found
            else:
                problem = "/health answered something other than a JSON object"
        except ShadowlineError as error:
            problem = f"{error.__class__.__name__} {error}".strip()
        finally:
            await client.close()
        self.metrics.probed(self.cluster, answer)
        self._apply(
            *rules.probed(
                self.view,
                probe.instance,
                answer,
                problem,
                time.monotonic(),
                self._settings.takeover_delay,
                self._allow_data_loss,
            )
        )

    async def _promote(self, promote: rules.Promote) -> None:
        secret = self._settings.cluster_secret
        if secret is None:
            self.metrics.commanded(self.cluster, result="unsigned")
            self._say("cannot promote: SHADOWLINE_CLUSTER_SECRET is not set", "refused")
            return
        command = signing.sign(
            secret.get_secret_value(),
            {
                "type": "promote",
                "cluster": self.cluster,
                "shadow": promote.shadow,
                "epoch": promote.epoch,
                "previous_epoch": promote.epoch - 1,
                "command_id": str(uuid.uuid4()),
                "issued_at": time.time(),
                "issued_by": self._name,
                "reason": promote.reason,
            },
        )
        try:
            await self._broker.publish_command(f"promote.{promote.shadow}", command)
            self.metrics.commanded(self.cluster, result="sent")
        except Exception as error:
            self.metrics.commanded(self.cluster, result="undelivered")
            self._say(f"promote command for {promote.shadow} not delivered: {error}", "refused")


async def _touch(path: str, watches: list[ClusterWatch]) -> None:
    """Touch `path` every second while every cluster's broker link is up (a health check)."""
    while True:
        if all(w.connected for w in watches):
            await asyncio.to_thread(Path(path).touch)
        await asyncio.sleep(1)


def _health(name: str, watches: list[ClusterWatch]) -> dict[str, Any]:
    """GET /health of the watchdog: ok while every cluster's broker link is up."""
    now, clusters = time.monotonic(), {}
    for watch in watches:
        master = rules.master_of(watch.view)
        clusters[watch.cluster] = {
            "connected": watch.connected,
            "phase": watch.view.phase,
            "maintenance": watch.view.maintenance,
            "master": master.instance if master else None,
            "master_heartbeat_age": now - master.seen if master else None,
            "epoch": max((m.epoch for m in watch.view.members.values()), default=None),
        }
    ok = all(c["connected"] for c in clusters.values())
    return {"watchdog": name, "ok": ok, "clusters": clusters}


async def run_watchdog(
    settings: Settings,
    clusters: list[str],
    name: str,
    allow_data_loss: bool,
    health_file: str | None = None,
) -> None:
    watches: list[ClusterWatch] = []
    metrics = WatchdogMetrics(
        clusters, lambda: [w.seen() for w in watches], settings.takeover_delay
    )
    watches += [ClusterWatch(c, settings, name, allow_data_loss, metrics) for c in clusters]
    bind = settings.watchdog_http_bind
    sock = http.listen(bind) if bind else None  # a port in use fails here, before any work
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(w.run()) for w in watches]
    if health_file:
        tasks.append(asyncio.create_task(_touch(health_file, watches)))
    server = None
    if sock is not None:
        server = http.server(http.create_app(metrics, lambda: _health(name, watches)))
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        host, port = sock.getsockname()[:2]
        log.info("serving /health and /metrics on %s:%d", host, port)
    await stop.wait()
    if server is not None:  # let a scrape in flight finish; the rest is cancelled below
        server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(tasks[-1]), 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for watch in watches:
        await watch.close()
    log.info("watchdog stopped")
