"""Prometheus metrics of one instance, in a registry of its own (several apps per test process).

Gauges that mirror state (role, positions, lag, heartbeat ages) are set at scrape time from the
instance's HA status and its liveness, which costs nothing on the write path; counters and
histograms are updated where the thing happens. Every labelled counter starts at 0 for each
label value it can take, so `increase()` sees the first event and dashboards show the series.
Names follow Prometheus' conventions: `shadowline_` prefix, base units, counters end in _total.
The cluster is not a label here: it is constant per target, so the scrape config sets it
(deploy/prometheus/prometheus.yml).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shadowline import __version__
from shadowline.adapters.metric_labels import (
    FENCE_REASONS,
    MODES,
    PROMOTION_TRIGGERS,
    REJECT_REASONS,
    REJECTED_SOURCES,
    ROLES,
    SHADOW_STATES,
    fence_reason,
    rejection_reason,
)
from shadowline.domain.alerting import AlertName
from shadowline.domain.events import Event

NAN = float("nan")


def _or_nan(value: float | None) -> float:
    return NAN if value is None else float(value)


class Metrics:
    # __init__ is long on purpose: one declaration per metric with its help text, read as a
    # table of what the instance exports; split up it would only scatter the table.
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.info = Gauge(
            "shadowline_instance_info",
            "Always 1; labels name this instance (SHADOWLINE_INSTANCE) and its software version",
            ["name", "version"],
            registry=registry,
        )
        self.committed_position = Gauge(
            "shadowline_committed_position",
            "Last position committed to this store",
            registry=registry,
        )
        self.applied_position = Gauge(
            "shadowline_applied_position",
            "Last position applied to this instance's state (a shadow: replicated; else committed)",
            registry=registry,
        )
        self.published_position = Gauge(
            "shadowline_published_position",
            "Last position the relay had confirmed by the broker (its cursor); NaN when no relay",
            registry=registry,
        )
        self.epoch = Gauge(
            "shadowline_epoch", "Leadership term of this instance", registry=registry
        )
        self.role = Gauge(
            "shadowline_role", "1 for the instance's current role", ["role"], registry=registry
        )
        self.mode = Gauge(
            "shadowline_replication_mode",
            "1 for the replication mode (a master: its own; a shadow: its master's as last "
            "heard); all 0 without a confirmed shadow",
            ["mode"],
            registry=registry,
        )
        self.shadow_state = Gauge(
            "shadowline_shadow_state",
            "On a master: 1 for its shadow's state; all 0 without a shadow",
            ["state"],
            registry=registry,
        )
        self.lag_events = Gauge(
            "shadowline_replication_lag_events",
            "Events the shadow is behind (on the master: its shadow; on a shadow: itself)",
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "shadowline_replication_lag_seconds_now",
            "On a shadow: how long it has been behind its master (0 when caught up)",
            registry=registry,
        )
        self.peer_age = Gauge(
            "shadowline_peer_last_seen_seconds",
            "Seconds since the peer was last heard of over HTTP (a master: its shadow's last "
            "ack; a shadow: its last report answered by the master)",
            registry=registry,
        )
        self.peer_heartbeat_age = Gauge(
            "shadowline_peer_heartbeat_age_seconds",
            "Seconds since this instance last heard its peer's heartbeat on the broker "
            "(a shadow: its master's; a master: its shadow's)",
            registry=registry,
        )
        self.heartbeat_age = Gauge(
            "shadowline_heartbeat_confirmed_age_seconds",
            "Seconds since the broker last confirmed this instance's own heartbeat",
            registry=registry,
        )
        self.broker = Gauge(
            "shadowline_broker_connected",
            '1 with the broker node (host:port) this instance is connected to; 0 with node="" '
            "while it is connected to none",
            ["node"],
            registry=registry,
        )
        self.append_seconds = Histogram(
            "shadowline_append_batch_seconds",
            "Time to decide and commit one group-commit batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.batch_size = Histogram(
            "shadowline_append_batch_size",
            "Events appended per transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=registry,
        )
        self.alerts = Counter(
            "shadowline_alerts_total", "Alerts raised, by name", ["name"], registry=registry
        )
        self.replicated = Counter(
            "shadowline_replicated_events_total",
            "Events applied from the master",
            registry=registry,
        )
        self.replication_lag = Histogram(
            "shadowline_replication_lag_seconds",
            "From the master's commit (recorded_at) to the shadow's commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.promotions = Counter(
            "shadowline_promotions_total",
            "Times this instance became master by a promote command (failover: the watchdog's; "
            "switch-roles: a planned handover)",
            ["trigger"],
            registry=registry,
        )
        self.fencings = Counter(
            "shadowline_fencings_total",
            "Times this master fenced itself (stopped acknowledging writes), by reason",
            ["reason"],
            registry=registry,
        )
        self.rejoins = Counter(
            "shadowline_rejoins_total",
            "Times this old master rejoined a newer master as its shadow",
            registry=registry,
        )
        self.quarantined = Counter(
            "shadowline_quarantined_events_total",
            "Events an old master moved to quarantine (written after the fork point)",
            registry=registry,
        )
        self.rejected_messages = Counter(
            "shadowline_rejected_messages_total",
            "Messages and peer answers ignored because they failed authentication, by source",
            ["source"],
            registry=registry,
        )
        self.rejected_commands = Counter(
            "shadowline_rejected_commands_total",
            "Promote commands refused, by reason",
            ["reason"],
            registry=registry,
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        for counter, values in (
            (self.alerts, list(AlertName)),
            (self.promotions, PROMOTION_TRIGGERS),
            (self.fencings, FENCE_REASONS),
            (self.rejected_commands, REJECT_REASONS),
            (self.rejected_messages, REJECTED_SOURCES),
        ):
            for value in values:
                counter.labels(value)
        for unknown in (self.published_position, self.heartbeat_age, self.peer_heartbeat_age):
            unknown.set(NAN)  # until there is something to measure

    # -- events --------------------------------------------------------------------------------

    def observe_replicated(self, events: Sequence[Event]) -> None:
        now = datetime.now(UTC)
        self.replicated.inc(len(events))
        for event in events:
            self.replication_lag.observe(max(0.0, (now - event.recorded_at).total_seconds()))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.append_seconds.observe(seconds)

    def observe_published(self, position: int) -> None:
        self.published_position.set(position)

    def alerted(self, name: AlertName) -> None:
        self.alerts.labels(name).inc()

    def message_rejected(self, source: str) -> None:
        self.rejected_messages.labels(source).inc()

    def rejected(self, error: Exception) -> None:
        self.rejected_commands.labels(rejection_reason(error)).inc()

    def fenced(self, reason: str) -> None:
        self.fencings.labels(fence_reason(reason)).inc()

    def promoted(self, command: dict[str, Any]) -> None:
        # Only a planned handover names the fork position it expects (instance.failover).
        planned = isinstance(command.get("fork_position"), int)
        self.promotions.labels("switch-roles" if planned else "failover").inc()

    def rejoined(self, quarantined: int) -> None:
        self.rejoins.inc()
        self.quarantined.inc(quarantined)

    # -- scrape time ---------------------------------------------------------------------------

    def refresh(self, status: dict[str, Any]) -> None:
        """Set the gauges from the instance's HA status, at scrape time."""
        self.info.clear()
        self.info.labels(status["instance"], status.get("version", __version__)).set(1)
        self.committed_position.set(status["position"])
        self.applied_position.set(status["position"])
        self.epoch.set(status["epoch"])
        for role in ROLES:
            self.role.labels(role).set(1 if status["role"] == role else 0)
        for mode in MODES:
            self.mode.labels(mode).set(1 if status.get("replication") == mode else 0)
        shadow, lag = status.get("shadow") or {}, status.get("lag") or {}
        for state in SHADOW_STATES:
            self.shadow_state.labels(state).set(1 if shadow.get("state") == state else 0)
        self.lag_events.set(_or_nan(shadow.get("lag_events", lag.get("events"))))
        self.lag_seconds.set(_or_nan(lag.get("seconds")))
        self.peer_age.set(_or_nan(shadow.get("last_seen_age", status.get("last_contact_age"))))
        if status["role"] in ("shadow", "standalone"):
            self.published_position.set(NAN)  # no relay runs: nothing is published from here
        node = (status.get("broker") or {}).get("node")  # GET /ha's broker.node
        self.broker.clear()
        self.broker.labels(node or "").set(1 if node else 0)

    def refresh_heartbeats(self, status: dict[str, Any], heartbeats: HeartbeatClock) -> None:
        """Set the heartbeat ages (own confirmed, the peer's heard) from the liveness clock."""
        now = time.monotonic()
        own = heartbeats.confirmed_at
        self.heartbeat_age.set(NAN if own is None else now - own)
        shadow = status.get("shadow") or {}
        peer = shadow.get("instance") or (status.get("master") or {}).get("instance")
        heard = heartbeats.heard.get(peer) if peer else None
        self.peer_heartbeat_age.set(NAN if heard is None else now - heard[0])


class HeartbeatClock(Protocol):
    """When heartbeats were last confirmed and heard (application.liveness.Liveness)."""

    @property
    def confirmed_at(self) -> float | None: ...

    @property
    def heard(self) -> Mapping[str, tuple[float, Any]]: ...


class Scrape:
    """What GET /metrics renders: the metrics, with the gauges of state and of heartbeat ages
    set at scrape time (the heartbeats are heard by liveness, which is built after the metrics
    it reports into)."""

    def __init__(self, metrics: Metrics, heartbeats: HeartbeatClock | None = None) -> None:
        self._metrics = metrics
        self._heartbeats = heartbeats

    @property
    def registry(self) -> CollectorRegistry:
        return self._metrics.registry

    def refresh(self, status: dict[str, Any]) -> None:
        self._metrics.refresh(status)
        if self._heartbeats is not None:
            self._metrics.refresh_heartbeats(status, self._heartbeats)
