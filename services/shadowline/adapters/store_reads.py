"""The event store's reads: the head, items, state now and at any point, history, chains.

Every read runs in one REPEATABLE READ, read-only transaction, so what it returns is one
consistent snapshot; driver errors become `Unavailable` here, once (`raise ... from`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.store_sql import (
    DRIVER_ERRORS,
    LogView,
    event_of,
    read_head,
)
from shadowline.adapters.tables import events, items, quarantine, snapshots, store_head
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import NotFound, Unavailable
from shadowline.domain.events import CONFIG_EVENT_TYPES, GENESIS, Event
from shadowline.domain.records import EventFilter, Head, Image, Snapshot
from shadowline.domain.state import State, fold

T = TypeVar("T")


class StoreReads:
    """The reading half of adapters.store.EventStore (which adds the writes)."""

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
        except DRIVER_ERRORS as error:
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

    # -- reading -----------------------------------------------------------------------------

    @asynccontextmanager
    async def consistent(self) -> AsyncIterator[LogView]:
        """Reads of one REPEATABLE READ snapshot (for the audit): log, items and head agree."""
        async with self._connect() as connection:
            yield LogView(connection)

    async def head(self) -> Head:
        async def work(c: AsyncConnection) -> Head:
            return await read_head(c)

        return await self._read(work)

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
            head = await read_head(c)
            if 0 < position < head.base_position:
                raise NotFound(
                    f"history before position {head.base_position} is still being copied from "
                    "the master (shadow bootstrap); ask again shortly"
                )
            base = await self._snapshot_before(c, position)
            start = base.position if base else 0
            # Only each item's last change decides the fold, so only those rows are read: at
            # most one per item instead of every event since the snapshot (snapshot_interval
            # of them, folded on the writer's event loop).
            last = (
                select(func.max(events.c.position).label("position"))
                .where(
                    events.c.position > start,
                    events.c.position <= position,
                    events.c.type.in_(CONFIG_EVENT_TYPES),
                )
                .group_by(events.c.kind, events.c.name)
                .subquery()
            )
            result = await c.execute(
                select(events)
                .join(last, events.c.position == last.c.position)
                .order_by(events.c.position)
            )
            return fold(base.state if base else {}, (event_of(r) for r in result))

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
            return [event_of(r) for r in await c.execute(query)]

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

    async def image(self) -> Image:
        """The full current state for a shadow's bootstrap, read in one consistent snapshot:
        head, and every item row with its version (tombstones included)."""

        async def work(c: AsyncConnection) -> Image:
            head = await read_head(c)
            result = await c.execute(select(items).order_by(items.c.kind, items.c.name))
            # str(): SQLAlchemy names columns with a str subclass that orjson refuses as a key.
            rows = [{str(k): v for k, v in row._mapping.items()} for row in result]
            state = {f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]}
            return Image(head.position, head.chain, head.epoch, rows, state)

        return await self._read(work)

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
            return None if row is None else event_of(row)

        return await self._read(work)
