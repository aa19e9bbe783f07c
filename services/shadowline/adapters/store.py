"""The PostgreSQL event store: append batches, read events, state now and at any point.

Driver errors are translated once, here, into `Unavailable` (`raise ... from`), so callers deal
with shadowline's exceptions only. The reads are in adapters.store_reads, the rows and SQL
functions in adapters.store_sql.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from shadowline.adapters.store_reads import StoreReads
from shadowline.adapters.store_sql import (
    APPEND,
    BACKFILL,
    INSTALL,
    LogView,
    columns,
    json_text,
    reason,
)
from shadowline.adapters.tables import events, relay_cursor, snapshots
from shadowline.domain.errors import ConcurrentWriter, Conflict
from shadowline.domain.events import Event
from shadowline.domain.records import EventFilter, Head, Image, Snapshot
from shadowline.domain.state import State, digest

# Re-exported for the callers that still name them here (tests, the HTTP entrypoints).
__all__ = ["EventFilter", "EventStore", "Head", "Image", "LogView", "Snapshot"]


class EventStore(StoreReads):
    """One instance's store. Appends must come from a single writer (application.writer)."""

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
                    await connection.exec_driver_sql(APPEND, (expected, *columns(batch)))
                ).scalar()
        except IntegrityError as error:
            raise ConcurrentWriter(f"append refused by the database: {reason(error)}") from error
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
            [r["live"] for r in rows], [json_text(r["value"]) for r in rows],
            [r["position"] for r in rows], [r["updated_at"] for r in rows],
        )  # fmt: skip
        try:
            async with self._connect(write=True) as connection:
                await connection.exec_driver_sql(INSTALL, params)
        except IntegrityError as error:
            raise ConcurrentWriter(f"bootstrap refused by the database: {reason(error)}") from error

    async def backfill(self, batch: Sequence[Event], base_position: int) -> None:
        """Insert history below the bootstrap position (already chain-checked by the caller);
        `base_position` 0 says it is complete, which the database checks before it agrees."""
        async with self._connect(write=True) as connection:
            await connection.exec_driver_sql(BACKFILL, (*columns(batch), base_position))

    async def fence(self, epoch: int) -> None:
        """Refuse appends of any epoch older than `epoch` from now on, at the database.

        Conflict when `epoch` is more than one term past the store's newest (migration 0006).
        """
        try:
            async with self._connect(write=True) as connection:
                await connection.scalar(select(func.shadowline_fence(epoch)))
        except IntegrityError as error:
            raise Conflict(f"the store refused the fence: {reason(error)}") from error

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
            raise Conflict(f"the store refused the quarantine: {reason(error)}") from error
        return int(moved or 0)

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
