"""What monitoring needs from the outside: a publisher on the monitoring exchange and counters.

The adapters satisfy these structurally (adapters.broker.BrokerLink, adapters.metrics.Metrics);
the application never imports them, so no broker or Prometheus client reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from shadowline.domain.alerting import AlertName

# How a part raises an alert (application.monitoring.Monitor.alert): only by a documented name.
AlertSink = Callable[[AlertName, str, dict[str, Any]], None]


class MonitoringPublisher(Protocol):
    @property
    def ready(self) -> bool:
        """Connected to the broker: publishing now has a chance to go out."""
        ...

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None: ...


class MonitoringCounts(Protocol):
    """The counters monitoring keeps (shadowline_alerts_total, ..._rejected_messages_total)."""

    def alerted(self, name: AlertName) -> None: ...

    def message_rejected(self, source: str) -> None: ...


class HaCounts(Protocol):
    """The counters of promotions, fencings, rejoins and refused promote commands."""

    def fenced(self, reason: str) -> None: ...

    def rejected(self, error: Exception) -> None: ...

    def promoted(self, command: dict[str, Any]) -> None: ...

    def rejoined(self, quarantined: int) -> None: ...


class Alerts(Protocol):
    """How application code raises alerts and reports rejected inputs (application.monitoring
    implements it)."""

    def alert(self, name: AlertName, message: str, details: dict[str, Any]) -> None: ...

    def resolve(self, name: AlertName, sentence: str) -> None: ...

    def rejected(self, source: str, reason: str) -> None: ...

    def publish(self, routing_key: str, body: dict[str, Any]) -> None: ...
