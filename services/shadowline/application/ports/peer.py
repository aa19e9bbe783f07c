"""The other instance of the pair, as the application calls it (adapters.peer.PeerClient):
signed requests whose answers are authenticated before they are returned. A 4xx raises
domain.errors.PeerRefused; an unreachable, slow or unauthenticated peer raises Unavailable."""

from __future__ import annotations

from typing import Any, Protocol


class Peer(Protocol):
    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any: ...

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]: ...

    async def close(self) -> None: ...
