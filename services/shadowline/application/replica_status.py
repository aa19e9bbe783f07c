"""A shadow's contact with its master: what it reports (its head, a divergence), what it learns
(confirmed or not, the master's position and replication mode), and the lag that follows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.ports.peer import Peer
from shadowline.application.writer import Writer
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import PeerRefused, Unavailable
from shadowline.domain.events import Event

log = logging.getLogger("shadowline.application.replica")


class MasterContact:
    """The reporting half of application.replica.Replicator, and the status /ha shows."""

    def __init__(
        self,
        *,
        writer: Writer,
        peer: Peer,
        alert: AlertSink,
        report_every: float,
        on_applied: Callable[[Sequence[Event]], None] | None,
    ) -> None:
        self._writer = writer
        self._peer = peer
        self._alert = alert
        self._report_every = report_every
        self._on_applied = on_applied
        self._report_now = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.master_position = 0
        self.last_contact: float | None = None
        self.behind_since: float | None = None
        self.replication: str | None = None  # the master's mode, as its last answer said
        self.diverged: dict[str, Any] | None = None  # told to the master in every report

    # -- status ------------------------------------------------------------------------------

    def lag_events(self) -> int:
        return max(0, self.master_position - self._writer.position)

    def lag_seconds(self) -> float:
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    def contact_age(self) -> float | None:
        return None if self.last_contact is None else time.monotonic() - self.last_contact

    def in_sync(self, lost_after: float) -> bool:
        age = self.contact_age()
        return (
            self.confirmed.is_set()
            and age is not None
            and age <= lost_after
            and self.lag_events() == 0
        )

    # -- reporting to the master -------------------------------------------------------------

    async def report(self) -> None:
        """Tell the master what we applied; learn whether we are confirmed and how far it is."""
        report: dict[str, Any] = {
            "position": self._writer.position,
            "chain": self._writer.chain.hex() if self._writer.position else None,
        }
        if self.diverged is not None:
            report["diverged"] = self.diverged
        answer = await self._peer.call("POST", "/ha/peer/ack", report)
        self.last_contact = time.monotonic()
        self.master_position = int(answer["position"])
        self.replication = answer.get("replication")
        if answer["state"] == "confirmed":
            self.confirmed.set()
        self.track_lag()

    def track_lag(self) -> None:
        if self.master_position > self._writer.position:
            self.behind_since = self.behind_since or time.monotonic()
        else:
            self.behind_since = None

    async def run_reporter(self) -> None:
        """Report at once after each applied batch (sync mode waits on it), else periodically."""
        while True:
            self._report_now.clear()
            try:
                await self.report()
            except PeerRefused as error:
                self._alert(
                    AlertName.SHADOW_REFUSED, f"the master refuses this shadow: {error}", {}
                )
            except Unavailable as error:
                log.warning("master unreachable: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self._report_every)

    def diverge(self, position: int, reason: str) -> None:
        if self.diverged is None:
            self.diverged = {"position": position, "reason": reason}
            self._alert(
                AlertName.DIVERGENCE,
                f"this shadow's log differs from its master's at position {position}: {reason}",
                dict(self.diverged),
            )
        self._report_now.set()

    def applied(self, events: Sequence[Event]) -> None:
        self.master_position = max(self.master_position, events[-1].position)
        self.track_lag()
        self._report_now.set()
        if self._on_applied is not None:
            self._on_applied(events)
