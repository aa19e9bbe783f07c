"""What a restore needs of the target's database (adapters.restore_store satisfies it): one
transaction that takes the whole archive or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from shadowline.domain import audit
from shadowline.domain.events import Event


@dataclass(frozen=True, slots=True)
class Target:
    """The target store as the restore's transaction found it."""

    role: str
    epoch: int
    ha_peer: str | None  # a shadow or master this instance knows of: HA is set up
    position: int
    holds_data: bool  # events, items or snapshots
    others: tuple[str, ...]  # other sessions on the database (an instance still running?)


class RestoreSession(Protocol):
    async def target(self) -> Target: ...

    async def fence(self, epoch: int) -> None: ...

    async def append(self, events: Sequence[Event], expected: int) -> None: ...

    async def served(self) -> audit.Rows: ...

    async def set_epoch(self, epoch: int) -> None: ...


class RestoreStore(Protocol):
    def session(self) -> AbstractAsyncContextManager[RestoreSession]:
        """A transaction: committed when the block ends normally, else rolled back."""
        ...
