"""One watchdog process watching one or more clusters over the broker and HTTP.

It hears heartbeats, ticks the pure decision functions of `domain.watchdog` every few tens of
milliseconds on a monotonic clock, probes masters directly, and sends signed promote commands.
Every decision is a logged sentence and a `failover.<step>` message on monitoring. It keeps no
state that matters across restarts: promotion is idempotent by epoch, and a restarted watchdog
waits one full takeover delay before it may act.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from shadowline.domain import alerting, signing
from shadowline.domain import watchdog as rules
from shadowline.domain.watchdog import Step
from shadowline.settings import Settings
from shadowline.watchdog.metrics import Seen, WatchdogMetrics
from shadowline.watchdog.ports import Prober, WatchdogLink

log = logging.getLogger("shadowline.watchdog")

TICK = 0.05


class ClusterWatch:
    def __init__(
        self,
        cluster: str,
        settings: Settings,
        name: str,
        allow_data_loss: bool,
        metrics: WatchdogMetrics | None = None,
        *,
        link: WatchdogLink,
        probe: Prober,
    ) -> None:
        """`link`: this cluster's broker link; `probe`: how a silent master is probed."""
        self.cluster = cluster
        self._settings = settings
        self._name = name
        self._allow_data_loss = allow_data_loss
        self._broker = link
        self._prober = probe
        self.view = rules.View(cluster, started=time.monotonic())
        self._throttle = alerting.Throttle()
        self._tasks: set[asyncio.Task[None]] = set()
        self.metrics = metrics or WatchdogMetrics(
            [cluster], lambda: [self.seen()], settings.takeover_delay
        )

    async def run(self) -> None:
        while True:
            try:
                await self._broker.start()
                await self._broker.heartbeats(self._on_heartbeat)
                break
            except Exception as error:
                log.warning("[%s] cannot reach RabbitMQ yet: %s", self.cluster, error)
                await asyncio.sleep(1)
        log.info(
            "[%s] watching (takeover delay %.1fs)", self.cluster, self._settings.takeover_delay
        )
        while True:
            await asyncio.sleep(TICK)
            self._apply(rules.tick(self.view, time.monotonic(), self._settings.takeover_delay))

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
                Step.MAINTENANCE,
            )

    def _on_heartbeat(
        self, routing_key: str, beat: dict[str, Any] | None, refusal: str | None
    ) -> None:
        """Only authenticated, fresh heartbeats count: a forged one must neither stop a failover
        (a fake master) nor start one, and a replayed one must not keep a dead master alive."""
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

    def _apply(self, decision: rules.Decision) -> None:
        view, actions, sentence, step = decision
        self.metrics.decided(self.cluster, self.view, view)
        self.view = view
        if sentence:
            self._say(sentence, step or Step.DECISION)
        for action in actions:
            if isinstance(action, rules.Probe):
                self._spawn(self._probe(action))
            else:
                self._spawn(self._promote(action))

    def _say(self, sentence: str, step: Step) -> None:
        log.info("[%s] %s", self.cluster, sentence)
        body = {
            "cluster": self.cluster,
            "watchdog": self._name,
            "step": step.value,
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
        # A signed probe whose answer must be authenticated: a fake instance at the master's URL
        # cannot pass for a live master (its answer fails, and so counts as no answer).
        answer, problem = await self._prober(
            probe.url, probe.instance, lambda reason: self._rejected("peer-answer", reason)
        )
        self.metrics.probed(self.cluster, answer)
        self._apply(
            rules.probed(
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
            self._say("cannot promote: SHADOWLINE_CLUSTER_SECRET is not set", Step.REFUSED)
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
            self._say(f"promote command for {promote.shadow} not delivered: {error}", Step.REFUSED)


async def touch_health_file(path: str, watches: list[ClusterWatch]) -> None:
    """Touch `path` every second while every cluster's broker link is up (a health check)."""
    while True:
        if all(w.connected for w in watches):
            await asyncio.to_thread(Path(path).touch)
        await asyncio.sleep(1)


def health(name: str, watches: list[ClusterWatch]) -> dict[str, Any]:
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
