"""On the master: what its shadow reports of the events it applied.

Kept in memory at once (sync mode waits on it), written to the database at most once a second.
The chain value a shadow reports at its position is compared with ours: a shadow whose log
differs is diverged, and its acks never count in sync mode (an acknowledged write must be in
the shadow's log as ours).
"""

from __future__ import annotations

import time
from typing import Any

from shadowline.application import verify
from shadowline.application.gate import CommitGate
from shadowline.application.ports.ha import HaRepo
from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.ports.store import EventStore
from shadowline.application.status import ShadowSeen
from shadowline.domain.alerting import AlertName


class ShadowReports:
    def __init__(
        self,
        *,
        repo: HaRepo,
        store: EventStore,
        writer: verify.Head,
        gate: CommitGate,
        alert: AlertSink,
    ) -> None:
        self._repo = repo
        self._store = store
        self._writer = writer
        self._gate = gate
        self._alert = alert
        self._seen: float | None = None  # monotonic time of the last report
        self._position = 0
        self._persisted_at = 0.0
        # Set when the shadow's log differs from ours; its acks then count for nothing.
        self._diverged: dict[str, Any] | None = None

    def seen(self) -> ShadowSeen:
        return ShadowSeen(self._seen, self._position, self._diverged)

    def joined(self) -> None:
        self._seen, self._position = time.monotonic(), 0

    def forgotten(self) -> None:
        self._seen, self._position, self._diverged = None, 0, None

    async def report(
        self, instance: str, position: int, chain: bytes | None, diverged: dict[str, Any] | None
    ) -> None:
        now = time.monotonic()
        self._seen = now
        found = await verify.divergence(self._store, self._writer, position, chain, diverged)
        if found is not None:
            self._found_diverged(instance, found)
        elif self._diverged is None:
            self._position = max(self._position, position)
            await self._gate.shadow_acked(position, self._writer.position)
        if now - self._persisted_at > 1.0:
            self._persisted_at = now
            await self._repo.shadow_seen(instance, position)

    def _found_diverged(self, instance: str, diverged: dict[str, Any]) -> None:
        if self._diverged is not None:
            return
        self._diverged = {
            "position": diverged.get("position"),
            "reason": str(diverged.get("reason"))[:200],
        }
        self._alert(
            AlertName.DIVERGENCE,
            f"shadow {instance}'s log differs from this master's at position "
            f"{self._diverged['position']}: {self._diverged['reason']}; its "
            "acknowledgements no longer count (remove it and set up a new shadow)",
            {"shadow": instance, **self._diverged},
        )
