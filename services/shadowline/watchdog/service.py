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
import signal
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import orjson
from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.domain import signing
from shadowline.domain import watchdog as rules
from shadowline.settings import Settings

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
    def __init__(self, cluster: str, settings: Settings, name: str, allow_data_loss: bool) -> None:
        self.cluster = cluster
        self._settings = settings
        self._name = name
        self._allow_data_loss = allow_data_loss
        self._broker = BrokerLink(
            settings.amqp_url.get_secret_value(),
            Names(cluster),
            f"shadowline {name}",
            declare=("monitoring", "commands"),
        )
        self.view = rules.View(cluster, started=time.monotonic())
        self._tasks: set[asyncio.Task[None]] = set()

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
        try:
            beat = orjson.loads(message.body)
            if isinstance(beat, dict) and {"instance", "role", "epoch"} <= beat.keys():
                self._on_heartbeat_doc(beat)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("[%s] ignored a malformed heartbeat", self.cluster)

    def _apply(self, view: rules.View, actions: list[rules.Action], sentence: str | None) -> None:
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
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(limit)) as client:
                response = await client.get(f"{probe.url}/health")
            if response.status_code == 200:
                answer = response.json()
            else:
                problem = f"/health answered {response.status_code}"
        except (httpx.HTTPError, ValueError) as error:
            problem = f"{error.__class__.__name__} {error}".strip()
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
            self._say("cannot promote: SHADOWLINE_CLUSTER_SECRET is not set", "refused")
            return
        command = signing.sign(
            secret.get_secret_value(),
            {
                "type": "promote",
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
        except Exception as error:
            self._say(f"promote command for {promote.shadow} not delivered: {error}", "refused")


async def _touch(path: str, watches: list[ClusterWatch]) -> None:
    """Touch `path` every second while every cluster's broker link is up (a health check)."""
    while True:
        if all(w.connected for w in watches):
            await asyncio.to_thread(Path(path).touch)
        await asyncio.sleep(1)


async def run_watchdog(
    settings: Settings,
    clusters: list[str],
    name: str,
    allow_data_loss: bool,
    health_file: str | None = None,
) -> None:
    watches = [ClusterWatch(c, settings, name, allow_data_loss) for c in clusters]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(w.run()) for w in watches]
    if health_file:
        tasks.append(asyncio.create_task(_touch(health_file, watches)))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for watch in watches:
        await watch.close()
    log.info("watchdog stopped")
