"""The twins satisfy the application's ports: mypy checks these conversions (nothing here runs
in a test), so a port that changes breaks the type check before it breaks a unit test."""

from __future__ import annotations

from shadowline.application.ports.broker import EventPublisher
from shadowline.application.ports.monitoring import MonitoringPublisher
from shadowline.application.ports.store import EventStore
from tests.twins.broker import InMemoryBroker
from tests.twins.store import InMemoryStore


def as_store(store: InMemoryStore) -> EventStore:
    return store


def as_event_publisher(broker: InMemoryBroker) -> EventPublisher:
    return broker


def as_monitoring_publisher(broker: InMemoryBroker) -> MonitoringPublisher:
    return broker
