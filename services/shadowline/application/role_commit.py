"""A change of role committed as one store transaction, with the HA event that records it.

It runs inside the writer as an exclusive job: no append is in flight, so the head the change
is decided at stays the head until the transaction commits. The event is chained and signed
here as the writer does its own. Afterwards the writer's memory follows what changed: the event
is its new head (an HA event touches no item, so a promotion, in the failover's write pause,
reads no item again); a quarantine rewinds items, and an outcome not known (the database away
at COMMIT) may have landed, so those re-read the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shadowline.application.ports.ha import HaRepo
from shadowline.application.ports.store import EventStore
from shadowline.application.writer import Writer
from shadowline.domain.errors import Conflict, ShadowlineError
from shadowline.domain.ha import RoleChange
from shadowline.domain.promote import sealed_event
from shadowline.domain.records import Head

# An HA event recorded with a role change: (type, data, metadata).
EventParts = tuple[str, dict[str, Any], dict[str, Any]]
# Decides the change at the head (and may refuse it by raising).
ChangeAt = Callable[[Head], tuple[RoleChange, EventParts | None]]


class RoleCommits:
    def __init__(
        self, store: EventStore, writer: Writer, repo: HaRepo, cluster: str, secret: str | None
    ) -> None:
        self._store = store
        self._writer = writer
        self._repo = repo
        self._cluster = cluster
        self._secret = secret  # signs the event, as the writer signs its own

    async def commit(self, change_at: ChangeAt, epoch: int) -> tuple[Head, int]:
        """Returns the head the change was decided at and how many events it quarantined.
        The event is in the change's new epoch, or else in `epoch` (the current one)."""

        async def job() -> tuple[Head, int]:
            head = await self._store.head()
            change, parts = change_at(head)
            if parts is not None:
                type_, data, metadata = parts
                event = sealed_event(
                    head, epoch=change.epoch or epoch, type_=type_, data=data,
                    metadata=metadata, now=datetime.now(UTC), secret=self._secret,
                    cluster=self._cluster,
                )  # fmt: skip
                change = replace(change, event=event)
            try:
                moved = await self._repo.change_role(change)
            except Conflict:
                raise  # refused: the transaction rolled back, nothing changed
            except Exception:  # not known whether it committed: read what the store holds
                with contextlib.suppress(ShadowlineError):
                    await self._writer.reload()
                raise
            await self._follow(head, change)
            return head, moved

        result: tuple[Head, int] = await self._writer.exclusive(job, reload=False)
        return result

    async def _follow(self, head: Head, change: RoleChange) -> None:
        """The writer's memory after a committed change (see the module's docstring)."""
        held = (self._writer.position, self._writer.chain) == (head.position, head.chain)
        if change.quarantine_after is not None or (change.event is not None and not held):
            await self._writer.reload()
        elif change.event is not None:
            await self._writer.recorded(change.event)
