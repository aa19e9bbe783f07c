"""What the HA core needs from the outside: its record in the database, the peer, and the
heartbeats on the broker. adapters.ha_repo.HaRepository, adapters.peer.PeerClient and
adapters.broker.BrokerLink satisfy these structurally."""

from __future__ import annotations

from typing import Any, Final, Protocol

from shadowline.application.ports.peer import Peer
from shadowline.domain.ha import HaRecord, RoleChange


class HaRepo(Protocol):
    async def load(self) -> HaRecord: ...

    async def change_role(self, change: RoleChange) -> int:
        """Commit `change` as one transaction; returns how many events it quarantined.
        Conflict when the role is no longer one of `change.expect` (nothing is changed)."""
        ...

    async def update(self, **ha: Any) -> None: ...

    async def register_shadow(self, instance: str, url: str, confirmed: bool) -> str: ...

    async def confirm_shadow(self, instance: str | None) -> str: ...

    async def forget_shadow(self) -> str: ...

    async def shadow_seen(self, instance: str, position: int) -> bool: ...


# Every instance-to-instance call (adapters.peer.PeerClient, as bootstrap.wiring makes it): each
# phase (connecting, sending, each wait for the answer) within PEER_TIMEOUT seconds, the whole
# call within PEER_DEADLINE_FACTOR times that, however slowly the peer answers.
PEER_TIMEOUT: Final = 10.0
PEER_DEADLINE_FACTOR: Final = 3


class Peers(Protocol):
    """Makes a client of the instance at `url`; when `instance` is given, only an answer of
    that instance counts (a genuine instance at the wrong address is not the peer)."""

    def __call__(
        self, url: str, instance: str | None = None, timeout: float = PEER_TIMEOUT
    ) -> Peer: ...


class HeartbeatPublisher(Protocol):
    @property
    def ready(self) -> bool: ...

    async def start(self) -> None:
        """Connect (the lease's own connection: adapters.lease_link)."""
        ...

    def quiet(self) -> float | None:
        """Seconds since anything came from the broker node; None while not connected."""
        ...

    async def answers(self, within: float) -> bool:
        """Whether the node answers a request (not a confirm) within `within` seconds."""
        ...

    def abandon_node(self, why: str, silent: float) -> bool:
        """Leave the broker node for the next one if nothing came from it for `silent`
        seconds (it stopped answering); whether it did."""
        ...

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None: ...
