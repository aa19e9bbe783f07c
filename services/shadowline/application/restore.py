"""`shadowline restore`: an archive onto a stopped, standalone, empty instance, all or nothing.

Straight into the target's database (like pg_restore), not through an HTTP endpoint: the
instance must be stopped anyway (its writer keeps the head in memory), the contract has no
restore path, and a database URL is what an operator restoring a lost instance has. Everything
goes through the store's own append function (migration 0006: the compare-and-set on the head,
the term rule, the items derived from the events), in one transaction that is committed only
after the archive's MAC, every chain link and signature, and the fold have been checked, and the
restore itself is recorded as the next event (`BackupRestored`): a bad archive changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shadowline.application.ports.restore import RestoreSession, RestoreStore, Target
from shadowline.domain.audit import first_difference
from shadowline.domain.backup import Reader
from shadowline.domain.errors import BackupRefused
from shadowline.domain.events import Event
from shadowline.domain.restore import (
    Verifier,
    resigned,
    restore_event,
    start_refusal,
    target_refusal,
)
from shadowline.domain.validation import Catalog

__all__ = ["Restored", "restore", "start_refusal"]


@dataclass(frozen=True, slots=True)
class Restored:
    events: int
    items: int
    origin_cluster: str
    origin_instance: str
    origin_head: int
    record: Event  # the BackupRestored event


def check_target(target: Target) -> None:
    """Refuse a target that is not a stopped, standalone instance with an empty store."""
    if target.others:
        names = ", ".join(sorted({n or "unnamed" for n in target.others}))
        raise BackupRefused(
            f"{len(target.others)} other session(s) are connected to the target database "
            f"({names}): stop the instance first (restore writes its database directly)"
        )
    if target.role != "standalone" or target.ha_peer is not None:
        what = f"a {target.role}" if target.role != "standalone" else "HA set up"
        raise BackupRefused(
            f"the target instance is {what} (knows {target.ha_peer or 'no peer'}): restore goes "
            "onto a standalone instance only, never into a master with HA enabled or a shadow"
        )
    if target.position or target.holds_data:
        raise BackupRefused(
            f"the target store is not empty (head at position {target.position}): restore only "
            "into a new database (shadowline migrate --create-database); the log is append-only, "
            "so nothing in it is replaced"
        )


class _Appender:
    """Appends in batches the store's term rule accepts: a batch may rise at most one term above
    the store's newest, so a history that skipped terms is fenced up to each one first."""

    def __init__(self, session: RestoreSession) -> None:
        self._session = session
        self.position = 0
        self._term = 1  # greatest(head epoch, fence epoch, 1), as the store computes it

    async def add(self, events: Sequence[Event]) -> None:
        start, term = 0, self._term
        for i, event in enumerate(events):
            if event.epoch > term + 1:
                await self._flush(events[start:i])
                start, term = i, self._term
                while event.epoch > term + 1:
                    term += 1
                    await self._session.fence(term)
                self._term = term
        await self._flush(events[start:])

    async def _flush(self, batch: Sequence[Event]) -> None:
        if not batch:
            return
        await self._session.append(batch, self.position)
        self.position = batch[-1].position
        self._term = max(self._term, batch[-1].epoch)


# Long for its one transaction: every step between BEGIN and COMMIT reads in order.
async def restore(
    reader: Reader,
    store: RestoreStore,
    *,
    secret: str,
    cluster: str,
    instance: str,
    catalog: Catalog,
    archive: Mapping[str, Any],
    metadata: Mapping[str, Any],
    page: int = 1000,
) -> Restored:
    """Verify and restore the archive `reader` reads as cluster `cluster`; BackupRefused (with
    nothing changed) when the archive or the target is refused."""
    manifest = reader.manifest
    if (refusal := target_refusal(manifest, {manifest.cluster}, cluster)) is not None:
        raise BackupRefused(refusal)
    verifier = Verifier(manifest, secret, catalog)
    async with store.session() as session:
        check_target(await session.target())
        appender = _Appender(session)
        for events in reader.events(page):
            verifier.feed(events)  # before anything of the page reaches the database
            await appender.add(resigned(events, secret, cluster))
        verifier.finish(reader.state())
        mac = reader.close()
        if (refusal := target_refusal(manifest, verifier.lineage, cluster)) is not None:
            raise BackupRefused(refusal)
        record = restore_event(
            verifier,
            secret=secret,
            cluster=cluster,
            instance=instance,
            archive={**archive, "mac": mac},
            metadata=metadata,
        )
        await appender.add([record])
        if (key := first_difference(verifier.rows, await session.served())) is not None:
            raise BackupRefused(f"the restored store serves {key} unlike the archive's log")
        await session.set_epoch(record.epoch)
    items = len(verifier.items)
    return Restored(
        manifest.position, items, manifest.cluster, manifest.instance, manifest.position, record
    )
