"""What the watchdog needs from the outside (adapters.broker.BrokerLink and adapters.peer's
probe_health satisfy these; the watchdog's runner wires them): the package imports no adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

HeartbeatHandler = Callable[[str, dict[str, object] | None, str | None], None]


class WatchdogLink(Protocol):
    """The watchdog's link to one cluster's broker names: monitoring and commands out. What
    comes in (heartbeats, other watchdogs' announcements) the runner delivers to ClusterWatch's
    `on_heartbeat` and `on_announcement`, authenticated or with why not."""

    @property
    def ready(self) -> bool: ...

    async def publish_monitoring(self, routing_key: str, body: Any) -> None: ...

    async def publish_command(self, routing_key: str, body: Any) -> None: ...


class Prober(Protocol):
    async def __call__(
        self, url: str, instance: str, on_rejected: Callable[[str], None]
    ) -> tuple[dict[str, Any] | None, str]:
        """A signed GET /health of `instance` at `url` whose answer is authenticated: (the
        answer, "") or (None, what went wrong); it never outlasts the probe's limit."""
        ...
