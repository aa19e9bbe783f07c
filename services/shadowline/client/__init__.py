"""Python client of shadowline.

- `Client` / `AsyncClient`: an instance's HTTP API (config writes with expected versions,
  reads, state at a position or time, diffs, the event history, HA status and setup).
- `BrokerClient` / `AsyncBrokerClient`: config changes published as commands on the cluster's
  broker and answered by whichever instance is master (waits out a failover).
- `subscribe` (async) / `monitor` (sync): the cluster's monitoring stream.

Every result is the JSON the service sent, typed (see `shadowline.client.types`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shadowline.client.types import (
    ClientError,
    CommandRefused,
    ConfigReply,
    ConfigState,
    Health,
    Item,
    MonitoringMessage,
    ReplyApplied,
    ReplyRefused,
    Written,
)

if TYPE_CHECKING:
    from shadowline.client.broker import (
        AsyncBrokerClient,
        BrokerClient,
        ReplyTimeout,
        Unroutable,
        command,
    )
    from shadowline.client.http import AsyncClient, Client
    from shadowline.client.monitoring import monitor, subscribe

# The HTTP client needs httpx and the broker ones aio-pika (with aiormq and yarl): each is
# imported on first use, so `import shadowline.client` (and the CLI's `--help`) costs neither.
_LAZY = {
    "AsyncBrokerClient": "broker",
    "BrokerClient": "broker",
    "ReplyTimeout": "broker",
    "Unroutable": "broker",
    "command": "broker",
    "AsyncClient": "http",
    "Client": "http",
    "monitor": "monitoring",
    "subscribe": "monitoring",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncBrokerClient",
    "AsyncClient",
    "BrokerClient",
    "Client",
    "ClientError",
    "CommandRefused",
    "ConfigReply",
    "ConfigState",
    "Health",
    "Item",
    "MonitoringMessage",
    "ReplyApplied",
    "ReplyRefused",
    "ReplyTimeout",
    "Unroutable",
    "Written",
    "command",
    "monitor",
    "subscribe",
]
