"""Prometheus metrics of one instance, in a registry of its own (several apps per test process)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shadowline.domain.events import Event

ROLES = ("standalone", "master", "shadow", "fenced")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.committed_position = Gauge(
            "shadowline_committed_position",
            "Last position committed to this store",
            registry=self.registry,
        )
        self.epoch = Gauge(
            "shadowline_epoch", "Leadership term of this instance", registry=self.registry
        )
        self.role = Gauge(
            "shadowline_role", "1 for the instance's current role", ["role"], registry=self.registry
        )
        self.sync = Gauge(
            "shadowline_replication_sync",
            "1 while writes wait for the shadow (sync mode)",
            registry=self.registry,
        )
        self.lag_events = Gauge(
            "shadowline_replication_lag_events",
            "Events the shadow is behind (on the master: its shadow; on a shadow: itself)",
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "shadowline_replication_lag_seconds_now",
            "How long a shadow has been behind",
            registry=self.registry,
        )
        self.peer_age = Gauge(
            "shadowline_peer_last_seen_seconds",
            "Seconds since the peer was last heard of",
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            "shadowline_append_batch_seconds",
            "Time to decide and commit one group-commit batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "shadowline_append_batch_size",
            "Events appended per transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.alerts = Counter(
            "shadowline_alerts_total", "Alerts raised, by name", ["name"], registry=self.registry
        )
        self.replicated = Counter(
            "shadowline_replicated_events_total",
            "Events applied from the master",
            registry=self.registry,
        )
        self.replication_lag = Histogram(
            "shadowline_replication_lag_seconds",
            "From the master's commit (recorded_at) to the shadow's commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def observe_replicated(self, events: Sequence[Event]) -> None:
        now = datetime.now(UTC)
        self.replicated.inc(len(events))
        for event in events:
            self.replication_lag.observe(max(0.0, (now - event.recorded_at).total_seconds()))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.append_seconds.observe(seconds)

    def refresh(self, status: dict[str, Any]) -> None:
        """Set the gauges from the instance's HA status, at scrape time."""
        self.committed_position.set(status["position"])
        self.epoch.set(status["epoch"])
        for role in ROLES:
            self.role.labels(role).set(1 if status["role"] == role else 0)
        self.sync.set(1 if status.get("replication") == "sync" else 0)
        shadow, lag = status.get("shadow") or {}, status.get("lag") or {}
        events = shadow.get("lag_events", lag.get("events"))
        self.lag_events.set(events if events is not None else float("nan"))
        seconds = lag.get("seconds")
        self.lag_seconds.set(seconds if seconds is not None else float("nan"))
        age = shadow.get("last_seen_age", status.get("last_contact_age"))
        self.peer_age.set(age if age is not None else float("nan"))
