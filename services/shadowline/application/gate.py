"""When a master may acknowledge a write: the lease, and in sync mode the shadow's ack.

sync: a write is acknowledged only once the shadow has applied it, so a failover loses no
acknowledged write. If the shadow does not acknowledge within `timeout`, the master degrades to
async (and says so in a confirmed heartbeat before acknowledging anything more), raising
`alert.sync-degraded`; it returns to sync once the shadow has caught up (and the alert resolves). In every mode nothing is
acknowledged without a valid lease: a master that may have been replaced answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from shadowline.application.status import ShadowRelation
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import NotAcknowledged

log = logging.getLogger(__name__)

# After an announcement of async mode failed, the writes and reads queued behind it fail at once
# for this long rather than each announcing again (one heartbeat each, one after the other).
ANNOUNCE_BACKOFF = 0.25  # seconds


class CommitGate:
    def __init__(
        self,
        *,
        timeout: float,
        lease_valid: Callable[[], bool],
        wait_lease: Callable[[float], Awaitable[bool]],
        fenced: Callable[[], bool] | None = None,
        announce: Callable[[], Awaitable[bool]],
        alert: Callable[[AlertName, str], None],
        resolve: Callable[[AlertName, str], None] = lambda name, sentence: None,
        relation: ShadowRelation | None = None,
    ) -> None:
        self._timeout = timeout
        self._lease_valid = lease_valid
        self._wait_lease = wait_lease
        self._fenced = fenced or (lambda: False)
        self._announce = announce
        self._alert = alert
        self._resolve = resolve
        self.relation = relation if relation is not None else ShadowRelation()
        self._degrading = asyncio.Lock()
        self._failed_at = -ANNOUNCE_BACKOFF  # monotonic time of the last failed announcement
        self._signal = asyncio.Event()

    async def wait_lease(self, within: float) -> bool:
        return await self._wait_lease(within)

    @property
    def leased(self) -> bool:
        """Whether the lease holds now (nothing is acknowledged without it)."""
        return self._lease_valid()

    @property
    def replication(self) -> str | None:
        return self.relation.replication

    @property
    def enabled(self) -> bool:
        return self.relation.enabled

    @property
    def mode(self) -> str:
        return self.relation.mode

    @property
    def acked(self) -> int:
        return self.relation.acked

    def configure(self, enabled: bool, acked: int) -> None:
        """A new shadow relation starts async and turns sync once the shadow has caught up, so
        a shadow still bootstrapping (or an old master still rejoining) blocks no write."""
        relation = self.relation
        relation.enabled = enabled
        relation.acked = acked
        relation.mode = "async"
        # Writes still waiting for the old relation's shadow can never be acknowledged now.
        relation.generation += 1
        if not enabled:
            self._resolve(AlertName.SYNC_DEGRADED, "no shadow relation any more: nothing to sync")
        self._wake()

    def _wake(self) -> None:
        self._signal.set()
        self._signal = asyncio.Event()

    async def shadow_acked(self, position: int, head: int) -> None:
        relation = self.relation
        catching_up = relation.enabled and relation.mode == "async" and position >= head
        if position <= relation.acked and not catching_up:
            return
        relation.acked = max(relation.acked, position)
        if catching_up:
            relation.mode = "sync"
            log.info("shadow caught up at position %d: replication is sync again", position)
            self._resolve(
                AlertName.SYNC_DEGRADED,
                f"the shadow caught up at position {position}: replication is sync again",
            )
        self._wake()

    async def wait_acked(self, position: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (at most `timeout` s) until the shadow has acknowledged `position`."""
        deadline = time.monotonic() + timeout
        while self.acked < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signal.wait(), remaining)
        return True

    async def admit(self, position: int, master_url: str | None = None) -> None:
        """Return when the write at `position` may be acknowledged; raise NotWritable if never."""
        if self.enabled and self.mode == "sync" and self.acked < position:
            generation = self.relation.generation
            deadline = time.monotonic() + self._timeout
            while self.acked < position and self.relation.generation == generation:
                try:
                    await asyncio.wait_for(self._signal.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
            if self.relation.generation != generation:
                raise NotAcknowledged(
                    "the roles changed before the shadow acknowledged this write: its outcome "
                    "is unknown (stored here; quarantined if a newer master took over without "
                    "it)",
                    master_url,
                )
            if self.acked < position and not await self._degrade(position):
                raise NotAcknowledged(
                    "the shadow did not acknowledge this write and the switch to async could "
                    "not be announced: its outcome is unknown (stored here, not acknowledged)",
                    master_url,
                )
        # A fenced master may have been replaced (paused past its lease, or it heard a newer
        # epoch): the heartbeat `_degrade` just got confirmed renews the lease but says nothing
        # about that, so only a write the shadow already holds may still be acknowledged.
        held = self.enabled and self.acked >= position
        if not self._lease_valid() or (self._fenced() and not held):
            raise NotAcknowledged(
                "this master has no valid lease (cut off from the broker or paused): the write's "
                "outcome is unknown (stored here; quarantined if a newer master exists)",
                master_url,
            )

    async def _degrade(self, position: int) -> bool:
        """Switch to async, but only once a confirmed heartbeat told the watchdogs so: until
        then nothing may be acknowledged without the shadow. False if that did not happen."""
        async with self._degrading:
            if self.mode != "sync":
                return True
            if time.monotonic() - self._failed_at < ANNOUNCE_BACKOFF:
                return False  # it failed just now: the queued ones do not each try again
            self.relation.announcing = True  # heartbeats say async from now on
            try:
                announced = await self._announce()
            finally:
                self.relation.announcing = False
            if not announced:
                self._failed_at = time.monotonic()
                log.warning(
                    "could not announce async mode on the broker: write %d not acknowledged",
                    position,
                )
                return False
            self.relation.mode = "async"
        self._alert(
            AlertName.SYNC_DEGRADED,
            f"the shadow did not acknowledge position {position} within {self._timeout:.1f}s: "
            "replication degraded to async",
        )
        return True
