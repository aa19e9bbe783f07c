"""What the watchdog needs from the outside (adapters.broker.BrokerLink and adapters.peer's
probe_health satisfy these; the watchdog's runner wires them): the package imports no adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

HeartbeatHandler = Callable[[str, dict[str, object] | None, str | None], None]


class WatchdogLink(Protocol):
    """The watchdog's link to one cluster's broker: heartbeats in, monitoring and commands out."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def heartbeats(self, on_beat: HeartbeatHandler) -> None:
        """Consume heartbeats: `on_beat(routing_key, beat, refusal)`, with `beat` None when it
        failed authentication or freshness (`refusal` says why)."""
        ...

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None: ...

    async def publish_command(self, routing_key: str, body: Any) -> None: ...

    async def close(self) -> None: ...


class Prober(Protocol):
    async def __call__(
        self, url: str, instance: str, on_rejected: Callable[[str], None]
    ) -> tuple[dict[str, Any] | None, str]:
        """A signed GET /health of `instance` at `url` whose answer is authenticated: (the
        answer, "") or (None, what went wrong); it never outlasts the probe's limit."""
        ...
