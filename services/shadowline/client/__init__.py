"""Python client of shadowline.

- `Client` / `AsyncClient`: an instance's HTTP API (config writes with expected versions,
  reads, state at a position or time, diffs, the event history, HA status and setup).
- `BrokerClient` / `AsyncBrokerClient`: config changes published as commands on the cluster's
  broker and answered by whichever instance is master (waits out a failover).
- `subscribe` (async) / `monitor` (sync): the cluster's monitoring stream.

Every result is the JSON the service sent, typed (see `shadowline.client.types`).
"""

from shadowline.client.broker import (
    AsyncBrokerClient,
    BrokerClient,
    ReplyTimeout,
    Unroutable,
    command,
)
from shadowline.client.http import AsyncClient, Client
from shadowline.client.monitoring import monitor, subscribe
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
