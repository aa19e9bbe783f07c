"""The PostgreSQL event store: append batches, read events, state now and at any point.

Driver errors are translated once, here, into `Unavailable` (`raise ... from`), so callers deal
with shadowline's exceptions only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.tables import (
    events,
    items,
    quarantine,
    relay_cursor,
    snapshots,
    store_head,
)
from shadowline.domain import audit
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import ConcurrentWriter, Conflict, NotFound, Unavailable
from shadowline.domain.events import GENESIS, Event
from shadowline.domain.state import State, digest, fold

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Head:
    position: int
    chain: bytes
    recorded_at: datetime | None
    epoch: int = 0  # of the event at `position` (0 when the store is empty)
    base_position: int = 0  # events at or below it may not be here yet (shadow bootstrap)
    fence_epoch: int = 0  # appends of an older epoch are refused


@dataclass(frozen=True, slots=True)
class Snapshot:
    position: int
    digest: str
    state: State
    chain: bytes | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """A master's state for a shadow's bootstrap: head, item rows (with versions, tombstones)."""

    position: int
    chain: bytes
    epoch: int
    rows: list[dict[str, Any]]
    state: State


@dataclass(frozen=True, slots=True)
class EventFilter:
    kind: str | None = None
    name: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()  # event types (ConfigPut, MasterPromoted, ...); empty: all


def _event(row: Row[Any]) -> Event:
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


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _reason(error: IntegrityError) -> str:
    """The database's own sentence (the functions of migration 0006 explain their refusals)."""
    orig = error.orig
    return str(orig.__cause__ or orig) if orig is not None else str(error)


# The whole append as one call over arrays (migration 0006): the function derives the items rows
# and the head from the events it inserts, so the app role needs no write grant on either. Its
# head row lock serializes writers: position order = commit order.
_APPEND = "SELECT shadowline_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
_BACKFILL = "SELECT shadowline_backfill($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
_INSTALL = "SELECT shadowline_install($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"


def _columns(batch: Sequence[Event]) -> tuple[list[Any], ...]:
    """The events as one array per column, in the order the functions take them."""
    return (
        [e.position for e in batch], [e.id for e in batch], [e.epoch for e in batch],
        [e.type for e in batch], [e.kind for e in batch], [e.name for e in batch],
        [e.version for e in batch], [_json(e.data) for e in batch],
        [_json(e.metadata) for e in batch], [e.recorded_at for e in batch],
        [e.chain for e in batch], [e.signature for e in batch],
    )  # fmt: skip


_DRIVER_ERRORS = (OperationalError, InterfaceError, DBAPIError, OSError, TimeoutError)


class EventStore:
    """One instance's store. Appends must come from a single writer (see instance.writer)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def _connect(
        self, *, write: bool = False, autocommit: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        try:
            if autocommit:
                async with self.engine.connect() as connection:
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
                    yield connection
            elif write:
                async with self.engine.begin() as connection:
                    yield connection
            else:
                async with self.engine.connect() as connection:
                    await connection.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                    yield connection
        except IntegrityError:
            raise
        except _DRIVER_ERRORS as error:
            raise Unavailable(
                f"event store unavailable: {error.__class__.__name__}: {error}"
            ) from error

    async def _scalar(self, query: Select[Any]) -> Any:
        async def work(c: AsyncConnection) -> Any:
            return await c.scalar(query)

        return await self._read(work)

    async def _read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self._connect() as connection:
            return await work(connection)

    # -- writing -----------------------------------------------------------------------------

    async def append(self, batch: Sequence[Event], expected: int) -> None:
        """Append events expected+1.. and their current-state rows, atomically.

        One call of `shadowline_append` does it all (one statement, one round trip and one
        commit per batch): the compare-and-set on the head, the events, and the items rows it
        derives from them. A statement is atomic, so autocommit is a transaction here.
        """
        if not batch:
            return
        try:
            async with self._connect(autocommit=True) as connection:
                appended = (
                    await connection.exec_driver_sql(_APPEND, (expected, *_columns(batch)))
                ).scalar()
        except IntegrityError as error:
            raise ConcurrentWriter(f"append refused by the database: {_reason(error)}") from error
        if appended is not True:
            raise ConcurrentWriter(
                f"the store's head is no longer at {expected}: another writer appended"
            )

    async def save_snapshot(self, position: int, state: State) -> None:
        at = select(events.c.chain, events.c.epoch).where(events.c.position == position)
        async with self._connect(write=True) as connection:
            row = (await connection.execute(at)).one_or_none()
            await connection.execute(
                pg_insert(snapshots)
                .values(
                    position=position,
                    taken_at=func.now(),
                    digest=digest(state),
                    item_count=len(state),
                    state=state,
                    chain=row.chain if row else None,
                    epoch=row.epoch if row else None,
                )
                .on_conflict_do_nothing()
            )

    async def install(self, image: Image) -> None:
        """Make an empty store hold a master's image: its items, a snapshot and its head.

        The events up to the image's position are not here afterwards (`base_position`); the
        history backfill copies them later, chain-checked against the head installed here.
        `shadowline_install` refuses a store that holds anything.
        """
        rows = image.rows
        params = (
            image.position, image.chain, image.epoch, digest(image.state),
            [r["kind"] for r in rows], [r["name"] for r in rows], [r["version"] for r in rows],
            [r["live"] for r in rows], [_json(r["value"]) for r in rows],
            [r["position"] for r in rows], [r["updated_at"] for r in rows],
        )  # fmt: skip
        try:
            async with self._connect(write=True) as connection:
                await connection.exec_driver_sql(_INSTALL, params)
        except IntegrityError as error:
            raise ConcurrentWriter(
                f"bootstrap refused by the database: {_reason(error)}"
            ) from error

    async def backfill(self, batch: Sequence[Event], base_position: int) -> None:
        """Insert history below the bootstrap position (already chain-checked by the caller);
        `base_position` 0 says it is complete, which the database checks before it agrees."""
        async with self._connect(write=True) as connection:
            await connection.exec_driver_sql(_BACKFILL, (*_columns(batch), base_position))

    async def image(self) -> Image:
        """The full current state for a shadow's bootstrap, read in one consistent snapshot:
        head, and every item row with its version (tombstones included)."""

        async def work(c: AsyncConnection) -> Image:
            head = await self._head(c)
            result = await c.execute(select(items).order_by(items.c.kind, items.c.name))
            # str(): SQLAlchemy names columns with a str subclass that orjson refuses as a key.
            rows = [{str(k): v for k, v in row._mapping.items()} for row in result]
            state = {f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]}
            return Image(head.position, head.chain, head.epoch, rows, state)

        return await self._read(work)

    async def fence(self, epoch: int) -> None:
        """Refuse appends of any epoch older than `epoch` from now on, at the database.

        Conflict when `epoch` is more than one term past the store's newest (migration 0006).
        """
        try:
            async with self._connect(write=True) as connection:
                await connection.scalar(select(func.shadowline_fence(epoch)))
        except IntegrityError as error:
            raise Conflict(f"the store refused the fence: {_reason(error)}") from error

    async def quarantine_after(self, fork: int, new_epoch: int) -> int:
        """Move every event after `fork` to quarantine and rewind to it; returns how many.

        The database checks that this is a recovery into the next term (migration 0006): only
        the current term's own events after the fork may move, once; Conflict otherwise.
        """
        try:
            async with self._connect(write=True) as connection:
                moved = await connection.scalar(
                    select(func.shadowline_quarantine_after(fork, new_epoch))
                )
        except IntegrityError as error:
            raise Conflict(f"the store refused the quarantine: {_reason(error)}") from error
        return int(moved or 0)

    async def quarantined(self) -> list[dict[str, Any]]:
        query = select(quarantine).order_by(quarantine.c.quarantined_at, quarantine.c.position)

        async def work(c: AsyncConnection) -> list[dict[str, Any]]:
            return [{str(k): v for k, v in row._mapping.items()} for row in await c.execute(query)]

        return await self._read(work)

    async def promotion_after(self, epoch: int) -> Event | None:
        """The event that opened the first epoch after `epoch` (a MasterPromoted), if any."""
        query = (
            select(events)
            .where(events.c.epoch > epoch, events.c.type == "MasterPromoted")
            .order_by(events.c.position)
            .limit(1)
        )

        async def work(c: AsyncConnection) -> Event | None:
            row = (await c.execute(query)).one_or_none()
            return None if row is None else _event(row)

        return await self._read(work)

    async def relay_cursor(self) -> int:
        return int(
            await self._scalar(select(relay_cursor.c.position).where(relay_cursor.c.id == 1))
        )

    async def set_relay_cursor(self, position: int, *, force: bool = False) -> None:
        """Advance the relay's cursor (never backwards, unless `force`)."""
        query = update(relay_cursor).where(relay_cursor.c.id == 1)
        if not force:
            query = query.where(relay_cursor.c.position < position)
        async with self._connect(write=True) as connection:
            await connection.execute(query.values(position=position, updated_at=func.now()))

    # -- reading -----------------------------------------------------------------------------

    @asynccontextmanager
    async def consistent(self) -> AsyncIterator[LogView]:
        """Reads of one REPEATABLE READ snapshot (for the audit): log, items and head agree."""
        async with self._connect() as connection:
            yield LogView(connection)

    async def head(self) -> Head:
        async def work(c: AsyncConnection) -> Head:
            return await self._head(c)

        return await self._read(work)

    @staticmethod
    async def _head(c: AsyncConnection) -> Head:
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

    async def versions(self) -> dict[tuple[str, str], ItemVersion]:
        async def work(c: AsyncConnection) -> dict[tuple[str, str], ItemVersion]:
            result = await c.execute(
                select(items.c.kind, items.c.name, items.c.version, items.c.live)
            )
            return {(r.kind, r.name): ItemVersion(r.version, r.live) for r in result}

        return await self._read(work)

    async def item(self, kind: str, name: str) -> tuple[Any, int] | None:
        async def work(c: AsyncConnection) -> tuple[Any, int] | None:
            row = (
                await c.execute(
                    select(items.c.value, items.c.version).where(
                        items.c.kind == kind, items.c.name == name, items.c.live
                    )
                )
            ).one_or_none()
            return None if row is None else (row.value, row.version)

        return await self._read(work)

    async def current(self) -> tuple[int, State]:
        """The head position and the state at it, read in one consistent snapshot."""

        async def work(c: AsyncConnection) -> tuple[int, State]:
            position = await c.scalar(select(store_head.c.position).where(store_head.c.id == 1))
            result = await c.execute(
                select(items.c.kind, items.c.name, items.c.value)
                .where(items.c.live)
                .order_by(items.c.kind, items.c.name)
            )
            return int(position or 0), {f"{r.kind}/{r.name}": r.value for r in result}

        return await self._read(work)

    async def state_at(self, position: int) -> State:
        """State right after `position`: the nearest snapshot at or before it, plus a fold."""

        async def work(c: AsyncConnection) -> State:
            head = await self._head(c)
            if 0 < position < head.base_position:
                raise NotFound(
                    f"history before position {head.base_position} is still being copied from "
                    "the master (shadow bootstrap); ask again shortly"
                )
            base = await self._snapshot_before(c, position)
            start = base.position if base else 0
            result = await c.execute(
                select(events)
                .where(events.c.position > start, events.c.position <= position)
                .order_by(events.c.position)
            )
            return fold(base.state if base else {}, (_event(r) for r in result))

        return await self._read(work)

    async def _snapshot_before(self, c: AsyncConnection, position: int) -> Snapshot | None:
        row = (
            await c.execute(
                select(
                    snapshots.c.position, snapshots.c.digest, snapshots.c.state, snapshots.c.chain
                )
                .where(snapshots.c.position <= position)
                .order_by(snapshots.c.position.desc())
                .limit(1)
            )
        ).one_or_none()
        if row is None:
            return None
        chain = bytes(row.chain) if row.chain is not None else None
        return Snapshot(row.position, row.digest, row.state, chain)

    async def snapshot_at(self, position: int) -> Snapshot | None:
        found = await self._read(lambda c: self._snapshot_before(c, position))
        return found if found is not None and found.position == position else None

    async def latest_snapshot(self) -> Snapshot | None:
        return await self._read(lambda c: self._snapshot_before(c, 2**62))

    async def latest_snapshot_position(self) -> int:
        return int(await self._scalar(select(func.coalesce(func.max(snapshots.c.position), 0))))

    async def position_at(self, moment: datetime) -> int:
        """The last position recorded at or before `moment` (0 before the first event)."""
        query = select(func.coalesce(func.max(events.c.position), 0)).where(
            events.c.recorded_at <= moment
        )
        return int(await self._scalar(query))

    async def read(self, after: int, limit: int, where: EventFilter = EventFilter()) -> list[Event]:
        query = select(events).where(events.c.position > after)
        if where.kind is not None:
            query = query.where(events.c.kind == where.kind)
        if where.name is not None:
            query = query.where(events.c.name == where.name)
        if where.actor is not None:
            query = query.where(events.c.metadata["actor"].astext == where.actor)
        if where.since is not None:
            query = query.where(events.c.recorded_at >= where.since)
        if where.until is not None:
            query = query.where(events.c.recorded_at <= where.until)
        if where.types:
            query = query.where(events.c.type.in_(where.types))
        query = query.order_by(events.c.position).limit(limit)

        async def work(c: AsyncConnection) -> list[Event]:
            return [_event(r) for r in await c.execute(query)]

        return await self._read(work)

    async def chain_at(self, position: int) -> bytes | None:
        if position == 0:
            return GENESIS
        value = await self._scalar(select(events.c.chain).where(events.c.position == position))
        return None if value is None else bytes(value)

    async def chains(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The chain values of the events held at `positions` (a shadow compares duplicates);
        only those rows, however far apart they are."""
        query = select(events.c.position, events.c.chain).where(
            events.c.position.in_(list(positions))
        )

        async def work(c: AsyncConnection) -> dict[int, bytes]:
            return {row.position: bytes(row.chain) for row in await c.execute(query)}

        return await self._read(work)

    async def head_signed(self) -> bool | None:
        """Whether the event at the head carries a signature (None for an empty log)."""
        query = select(events.c.signature.is_not(None)).order_by(events.c.position.desc()).limit(1)
        value = await self._scalar(query)
        return None if value is None else bool(value)


class LogView:
    """The store as one snapshot sees it; see EventStore.consistent."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def head(self) -> Head:
        return await EventStore._head(self._c)

    async def events(self, after: int, limit: int) -> list[Event]:
        query = select(events).where(events.c.position > after).order_by(events.c.position)
        return [_event(r) for r in await self._c.execute(query.limit(limit))]

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
