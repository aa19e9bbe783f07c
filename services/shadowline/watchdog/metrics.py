"""Prometheus metrics of the watchdog, one series per watched cluster (label `cluster`).

What the watchdog sees (its view's phase, the master's heartbeat age, the epoch, who is heard)
is read from the views at scrape time; what it does (probes, promotions, refusals, commands) is
counted when it happens. Every labelled counter starts at 0 for each cluster and label value,
so `increase()` sees the first event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shadowline.domain import watchdog as rules

PHASES = ("watching", "probing", "promoting", "refused")
ROLES = ("master", "fenced", "shadow")  # what heartbeats say (standalone instances send none)
PROBE_RESULTS = ("master-alive", "not-master", "failed")
REFUSALS = tuple(r.value for r in rules.Refusal)
COMMAND_RESULTS = ("sent", "undelivered", "unsigned")
NAN = float("nan")


@dataclass(frozen=True, slots=True)
class Seen:
    """One cluster as the watchdog sees it right now."""

    cluster: str
    view: rules.View
    connected: bool


class _Views(Collector):
    """Gauges computed from the views when Prometheus scrapes."""

    def __init__(self, views: Callable[[], Iterable[Seen]], takeover_delay: float) -> None:
        self._views = views
        self._delay = takeover_delay

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        state = GaugeMetricFamily(
            "shadowline_watchdog_state",
            "1 for the phase of the watchdog's view of the cluster",
            labels=["cluster", "state"],
        )
        age = GaugeMetricFamily(
            "shadowline_watchdog_master_heartbeat_age_seconds",
            "Seconds since the watchdog last heard the cluster's master (NaN: no master known)",
            labels=["cluster"],
        )
        epoch = GaugeMetricFamily(
            "shadowline_watchdog_epoch",
            "Highest epoch heard in the cluster's heartbeats (NaN: nothing heard yet)",
            labels=["cluster"],
        )
        heard = GaugeMetricFamily(
            "shadowline_watchdog_instances",
            "Instances heard within the takeover delay, by the role their heartbeat says",
            labels=["cluster", "role"],
        )
        maintenance = GaugeMetricFamily(
            "shadowline_watchdog_maintenance",
            "1 while the master says maintenance mode (automatic failover paused)",
            labels=["cluster"],
        )
        connected = GaugeMetricFamily(
            "shadowline_watchdog_broker_connected",
            "1 while the watchdog's link to RabbitMQ for the cluster is up",
            labels=["cluster"],
        )
        for seen in self._views():
            view, cluster = seen.view, seen.cluster
            for phase in PHASES:
                state.add_metric([cluster, phase], 1 if view.phase == phase else 0)
            master = rules.master_of(view)
            age.add_metric([cluster], NAN if master is None else now - master.seen)
            epochs = [m.epoch for m in view.members.values()]
            epoch.add_metric([cluster], max(epochs) if epochs else NAN)
            live = [m.role for m in view.members.values() if now - m.seen <= self._delay]
            for role in ROLES:
                heard.add_metric([cluster, role], live.count(role))
            maintenance.add_metric([cluster], 1 if view.maintenance else 0)
            connected.add_metric([cluster], 1 if seen.connected else 0)
        yield from (state, age, epoch, heard, maintenance, connected)


class _Node(Collector):
    """The broker node the watchdog is connected to, read when Prometheus scrapes."""

    def __init__(self, node: Callable[[], str | None]) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node()
        gauge = GaugeMetricFamily(
            "shadowline_watchdog_broker_node",
            '1 with the broker node (host:port) the watchdog is connected to; 0 with node="" '
            "while it is connected to none",
            labels=["node"],
        )
        gauge.add_metric([node or ""], 1 if node else 0)
        yield gauge


class WatchdogMetrics:
    # Long only because every counter is declared here, in one place, with its help text.
    def __init__(
        self,
        clusters: Iterable[str],
        views: Callable[[], Iterable[Seen]],
        takeover_delay: float,
        node: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`node`: the broker node (host:port) of the watchdog's link now, None when none."""
        self.registry = registry = CollectorRegistry()
        self.probes = Counter(
            "shadowline_watchdog_probes_total",
            "Direct HTTP probes of a silent master, by result",
            ["cluster", "result"],
            registry=registry,
        )
        self.promotions = Counter(
            "shadowline_watchdog_promotions_total",
            "Promotions decided (a promote command for a new epoch; resends not counted)",
            ["cluster"],
            registry=registry,
        )
        self.failovers = Counter(
            "shadowline_watchdog_failovers_total",
            "Failovers completed: the promoted shadow was heard as master in the new epoch",
            ["cluster"],
            registry=registry,
        )
        self.refusals = Counter(
            "shadowline_watchdog_refusals_total",
            "Times the master was gone but the watchdog refused to promote, by reason",
            ["cluster", "reason"],
            registry=registry,
        )
        self.commands = Counter(
            "shadowline_watchdog_commands_total",
            "Promote commands the watchdog tried to send (resends included), by result",
            ["cluster", "result"],
            registry=registry,
        )
        self.rejected_messages = Counter(
            "shadowline_watchdog_rejected_messages_total",
            "Heartbeats, probe answers and other watchdogs' announcements ignored because they "
            "failed authentication or freshness, by source",
            ["cluster", "source"],
            registry=registry,
        )
        registry.register(_Views(views, takeover_delay))
        registry.register(_Node(node))
        for cluster in clusters:
            self.promotions.labels(cluster)
            self.failovers.labels(cluster)
            for counter, values in (
                (self.probes, PROBE_RESULTS),
                (self.refusals, REFUSALS),
                (self.commands, COMMAND_RESULTS),
                (self.rejected_messages, ("heartbeat", "peer-answer", "watchdog")),
            ):
                for value in values:
                    counter.labels(cluster, value)

    def probed(self, cluster: str, answer: dict[str, object] | None) -> None:
        if answer is None:
            result = "failed"
        else:
            result = "master-alive" if answer.get("role") == "master" else "not-master"
        self.probes.labels(cluster, result).inc()

    def rejected(self, cluster: str, source: str) -> None:
        self.rejected_messages.labels(cluster, source).inc()

    def commanded(self, cluster: str, *, result: str) -> None:
        self.commands.labels(cluster, result).inc()

    def decided(self, cluster: str, before: rules.View, after: rules.View) -> None:
        """Count what a decision of domain.watchdog did to the view."""
        if after.phase == "refused" and before.phase != "refused":
            reason = after.refusal or rules.Refusal.NO_LIVE_SHADOW
            self.refusals.labels(cluster, reason.value).inc()
        if after.phase == "promoting" and before.phase != "promoting":
            self.promotions.labels(cluster).inc()
        if before.phase == "promoting" and after.phase == "watching":
            self.failovers.labels(cluster).inc()
