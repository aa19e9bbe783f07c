"""One watchdog process watching one or more clusters over the broker and HTTP.

It hears heartbeats and the other watchdogs' announcements, ticks the pure decision functions
of `domain.watchdog` when `domain.watchdog_wake` says a tick may act (one timer per cluster that
heartbeats do not touch, so a heartbeat costs no timer work), probes masters directly, sends
signed promote commands, and announces what it sees (`failover.watchdog`) every interval.
Every decision is a logged sentence and a `failover.<step>` message on monitoring. It keeps no
state that matters across restarts: promotion is idempotent by epoch, and a restarted watchdog
waits one full takeover delay before it may act.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
import time
import uuid
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from shadowline.domain import alerting, signing
from shadowline.domain import watchdog as rules
from shadowline.domain import watchdog_wake as wake
from shadowline.domain.watchdog import Step
from shadowline.settings import Settings
from shadowline.watchdog.metrics import Seen, WatchdogMetrics
from shadowline.watchdog.ports import Prober, WatchdogLink

log = logging.getLogger("shadowline.watchdog")

ANNOUNCE = 1.0  # announcement interval, in takeover delays (peers count as live for 3)
MIN_WAIT = 0.005  # a timer never set sooner: a tick that decided nothing is not repeated at once
ANNOUNCEMENT = "failover.watchdog"
BOOT = secrets.token_hex(8)  # this run, in every announcement: with `seq`, replays are refused
_SEQ = itertools.count(1)


class ClusterWatch:
    # Long only because it names every collaborator once, keyword by keyword.
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
        secret: str | None = None,
    ) -> None:
        """`link`: this cluster's broker names; `probe`: how a silent master is probed;
        `secret`: the cluster's secret (default SHADOWLINE_CLUSTER_SECRET)."""
        self.cluster = cluster
        self._settings = settings
        self._delay = settings.takeover_delay
        self._name = name
        self._allow_data_loss = allow_data_loss
        self._broker = link
        self._prober = probe
        default = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
        self._secret = secret or default
        self.view = rules.View(cluster, started=time.monotonic(), name=name)
        self._throttle = alerting.Throttle()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._announcer: asyncio.TimerHandle | None = None
        self.metrics = metrics or WatchdogMetrics(
            [cluster], lambda: [self.seen()], settings.takeover_delay
        )

    def begin(self) -> None:
        """Start watching now (the broker link is up): one full delay before any action."""
        self.view = replace(self.view, started=time.monotonic())
        log.info("[%s] watching (takeover delay %.1fs)", self.cluster, self._delay)
        self._arm()
        loop = asyncio.get_running_loop()
        first = loop.time() + random.uniform(0, ANNOUNCE * self._delay)  # spread over clusters
        self._announcer = loop.call_at(first, self._announce_now)

    def _arm(self) -> None:
        """Set the timer to the next moment a tick may act (domain.watchdog_wake)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = wake.wake(self.view, now, self._delay)
        if at is not None:
            self._timer = loop.call_at(max(at, now + MIN_WAIT), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(rules.tick(self.view, time.monotonic(), self._delay))
        if self._timer is None:
            self._arm()

    def _announce_now(self) -> None:
        loop = asyncio.get_running_loop()
        self._announcer = loop.call_at(loop.time() + ANNOUNCE * self._delay, self._announce_now)
        self._announce()

    def _announce(self) -> None:
        doc = wake.announcement(self.view, time.monotonic(), ANNOUNCE * self._delay)
        doc.update(boot=BOOT, seq=next(_SEQ), at=time.time())
        self._spawn(self._publish(ANNOUNCEMENT, doc))

    @property
    def connected(self) -> bool:
        return self._broker.ready

    def seen(self) -> Seen:
        return Seen(self.cluster, self.view, self.connected)

    def close(self) -> None:
        for handle in (self._timer, self._announcer):
            if handle is not None:
                handle.cancel()
        for task in self._tasks:
            task.cancel()

    def _on_heartbeat_doc(self, beat: dict[str, Any]) -> None:
        """The hot path (every heartbeat of every cluster): O(members) work, no timer work
        unless a phase may end or no timer is set."""
        self.view = rules.observe(self.view, beat, time.monotonic())
        if self.view.phase != "watching" or self.view.held is not None:
            self._apply(rules.tick(self.view, time.monotonic(), self._delay))
        elif self._timer is None:
            self._arm()
        maintenance = (
            bool(beat.get("maintenance")) if beat.get("role") in ("master", "fenced") else None
        )
        if maintenance is not None and maintenance != self.view.maintenance:
            self.view = rules.replace_maintenance(self.view, maintenance)
            self._arm()
            self._say(
                f"maintenance mode {'on' if maintenance else 'off'} (set on master {beat['instance']}): "
                f"automatic failover {'paused' if maintenance else 'resumed'}",
                Step.MAINTENANCE,
            )

    def on_announcement(
        self, doc: dict[str, Any] | None, refusal: str | None, delay: float
    ) -> None:
        """Another watchdog's word (None: it failed authentication or freshness, `refusal`
        says why): it may hold this one off, within the bounds of domain.watchdog_peers."""
        if doc is None:
            self._rejected("watchdog", f"{ANNOUNCEMENT}: {refusal}")
            return
        known = set(self.view.peers)
        try:
            self.view = rules.heard_watchdog(self.view, doc, time.monotonic(), delay)
        except (KeyError, ValueError, TypeError) as error:
            log.warning("[%s] ignored a malformed watchdog announcement: %s", self.cluster, error)
            return
        if doc["watchdog"] not in known:
            place = rules.rank(self.view, time.monotonic())
            log.info("[%s] hears watchdog %s (%d before this one in the order)",
                     self.cluster, doc["watchdog"], place)  # fmt: skip

    def on_heartbeat(
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
        changed = view.phase != self.view.phase
        self.view = view
        if sentence:
            self._say(sentence, step or Step.DECISION)
        if changed or actions:
            self._arm()
            self._announce()  # the others learn of a probe or a promotion at once
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
        # The prober keeps its own deadline; this one holds even if something under it hangs
        # (a resolver, a TLS handshake): a watchdog stuck "probing" would hold the others off.
        try:
            async with asyncio.timeout(self._delay):
                answer, problem = await self._prober(
                    probe.url, probe.instance, lambda reason: self._rejected("peer-answer", reason)
                )
        except TimeoutError:
            answer, problem = None, f"no answer within the takeover delay ({self._delay:g} s)"
        self.metrics.probed(self.cluster, answer)
        self._apply(
            rules.probed(
                self.view,
                probe.instance,
                answer,
                problem,
                time.monotonic(),
                self._delay,
                self._allow_data_loss,
            )
        )

    async def _promote(self, promote: rules.Promote) -> None:
        secret = self._secret
        if secret is None:
            self.metrics.commanded(self.cluster, result="unsigned")
            self._say("cannot promote: SHADOWLINE_CLUSTER_SECRET is not set", Step.REFUSED)
            return
        command = signing.sign(
            secret,
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
