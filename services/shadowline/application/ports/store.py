"""What the application needs of the event store (adapters.store.EventStore satisfies it, and
so does the in-memory twin of the tests): the same names and signatures, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from shadowline.domain import audit
from shadowline.domain.commands import ItemVersion
from shadowline.domain.events import Event
from shadowline.domain.records import EventFilter, Head, Image, Snapshot
from shadowline.domain.state import State


class LogView(Protocol):
    """The store as one consistent snapshot sees it (the audit walks it)."""

    async def head(self) -> Head: ...

    async def events(self, after: int, limit: int) -> list[Event]: ...

    async def served(self) -> audit.Rows: ...

    async def marks(self) -> dict[int, audit.Mark]: ...

    async def snapshot_state(self, position: int) -> State: ...


class EventStore(Protocol):
    """One instance's store: appends from a single writer, reads from anyone."""

    # -- writing (the writer, replication, failover) --
    async def append(self, batch: Sequence[Event], expected: int) -> None: ...

    async def save_snapshot(self, position: int, state: State) -> None: ...

    async def install(self, image: Image) -> None: ...

    async def backfill(self, batch: Sequence[Event], base_position: int) -> None: ...

    async def fence(self, epoch: int) -> None: ...

    async def quarantine_after(self, fork: int, new_epoch: int) -> int: ...

    async def relay_cursor(self) -> int: ...

    async def set_relay_cursor(self, position: int, *, force: bool = False) -> None: ...

    # -- reading --
    def consistent(self) -> AbstractAsyncContextManager[LogView]: ...

    async def probe(self) -> None:
        """Unavailable unless the database answers and would take a write now."""
        ...

    async def recycle(self) -> None:
        """Drop every connection made before now (the database is back after a failure)."""
        ...

    async def head(self) -> Head: ...

    async def versions(self) -> dict[tuple[str, str], ItemVersion]: ...

    async def item(self, kind: str, name: str) -> tuple[Any, int] | None: ...

    async def current(self) -> tuple[int, State]: ...

    async def state_at(self, position: int) -> State: ...

    async def snapshot_at(self, position: int) -> Snapshot | None: ...

    async def latest_snapshot_position(self) -> int: ...

    async def position_at(self, moment: datetime) -> int: ...

    async def read(
        self, after: int, limit: int, where: EventFilter = EventFilter()
    ) -> list[Event]: ...

    async def chain_at(self, position: int) -> bytes | None: ...

    async def chains(self, positions: Sequence[int]) -> dict[int, bytes]: ...


class LocalConfig(Protocol):
    """The local kinds (log-level, ui-certificate, snc): versioned, outside the event log."""

    async def get(self, kind: str, name: str) -> tuple[Any, int] | None: ...

    async def all(self) -> dict[str, Any]: ...

    async def put(
        self,
        kind: str,
        name: str,
        value: Any,
        expected: int | None,
        actor: str,
        only_if_absent: bool = False,
    ) -> tuple[int, bool]: ...

    async def delete(self, kind: str, name: str, expected: int | None) -> int: ...
