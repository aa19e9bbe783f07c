"""The store's rows as shadowline's records, the SQL functions it calls, and one snapshot's view
of the log (for the audit). Shared by the store's reads and writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import Row, select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.tables import events, items, snapshots, store_head
from shadowline.domain import audit
from shadowline.domain.errors import Unavailable
from shadowline.domain.events import Event
from shadowline.domain.records import Head
from shadowline.domain.state import State


def event_of(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        position=row.position,
        epoch=row.epoch,
        type=row.type,
        kind=row.kind,
        name=row.name,
        version=row.version,
        data=row.data,
        metadata=row.metadata,
        recorded_at=row.recorded_at,
        chain=bytes(row.chain),
        signature=bytes(row.signature) if row.signature is not None else None,
    )


def json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def reason(error: IntegrityError) -> str:
    """The database's own sentence (the functions of migration 0006 explain their refusals)."""
    orig = error.orig
    return str(orig.__cause__ or orig) if orig is not None else str(error)


# The whole append as one call over arrays (migration 0006): the function derives the items rows
# and the head from the events it inserts, so the app role needs no write grant on either. Its
# head row lock serializes writers: position order = commit order.
APPEND = "SELECT shadowline_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
BACKFILL = "SELECT shadowline_backfill($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
INSTALL = "SELECT shadowline_install($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"


def columns(batch: Sequence[Event]) -> tuple[list[Any], ...]:
    """The events as one array per column, in the order the functions take them."""
    return (
        [e.position for e in batch], [e.id for e in batch], [e.epoch for e in batch],
        [e.type for e in batch], [e.kind for e in batch], [e.name for e in batch],
        [e.version for e in batch], [json_text(e.data) for e in batch],
        [json_text(e.metadata) for e in batch], [e.recorded_at for e in batch],
        [e.chain for e in batch], [e.signature for e in batch],
    )  # fmt: skip


DRIVER_ERRORS = (OperationalError, InterfaceError, DBAPIError, OSError, TimeoutError)


async def read_head(c: AsyncConnection) -> Head:
    row = (await c.execute(select(store_head).where(store_head.c.id == 1))).one()
    # `epoch` is kept by the writing functions (migration 0006), from the head's event or
    # the bootstrap image.
    return Head(
        row.position,
        bytes(row.chain),
        row.recorded_at,
        row.epoch,
        row.base_position,
        row.fence_epoch,
    )


class LogView:
    """The store as one snapshot sees it; see StoreReads.consistent."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def head(self) -> Head:
        return await read_head(self._c)

    async def events(self, after: int, limit: int) -> list[Event]:
        query = select(events).where(events.c.position > after).order_by(events.c.position)
        return [event_of(r) for r in await self._c.execute(query.limit(limit))]

    async def served(self) -> audit.Rows:
        result = await self._c.execute(
            select(items.c.kind, items.c.name, items.c.version, items.c.live, items.c.value,
                   items.c.position)
        )  # fmt: skip
        return {
            f"{r.kind}/{r.name}": audit.Row(r.version, r.live, r.value, r.position) for r in result
        }

    async def marks(self) -> dict[int, audit.Mark]:
        """What each snapshot claims (digest and chain), without the states."""
        query = select(snapshots.c.position, snapshots.c.digest, snapshots.c.chain)
        return {
            r.position: audit.Mark(r.digest, bytes(r.chain) if r.chain is not None else None)
            for r in await self._c.execute(query)
        }

    async def snapshot_state(self, position: int) -> State:
        query = select(snapshots.c.state).where(snapshots.c.position == position)
        return dict(await self._c.scalar(query) or {})


@asynccontextmanager
async def connected(
    engine: AsyncEngine, what: str, *, write: bool = False
) -> AsyncIterator[AsyncConnection]:
    """A connection (a transaction when `write`); driver errors become Unavailable naming
    `what` (a database restarting is a pause to retry, not a crash of the caller)."""
    try:
        async with engine.begin() if write else engine.connect() as c:
            yield c
    except IntegrityError:
        raise
    except DRIVER_ERRORS as error:
        raise Unavailable(f"{what} unavailable: {error.__class__.__name__}: {error}") from error
