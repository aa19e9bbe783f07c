"""The PostgreSQL event store: append batches, read events, state now and at any point.

Driver errors are translated once, here, into `Unavailable` (`raise ... from`), so callers deal
with shadowline's exceptions only. The reads are in adapters.store_reads, the rows and SQL
functions in adapters.store_sql.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from shadowline.adapters.store_reads import StoreReads
from shadowline.adapters.store_sql import (
    APPEND,
    BACKFILL,
    DRIVER_ERRORS,
    INSTALL,
    LogView,
    columns,
    json_text,
    reason,
)
from shadowline.adapters.tables import events, relay_cursor, snapshots
from shadowline.domain.errors import ConcurrentWriter, Conflict, Unavailable
from shadowline.domain.events import Event
from shadowline.domain.records import EventFilter, Head, Image, Snapshot
from shadowline.domain.state import State, digest

# Re-exported for the callers that still name them here (tests, the HTTP entrypoints).
__all__ = ["EventFilter", "EventStore", "Head", "Image", "LogView", "Snapshot"]

# A new transaction would be read-write: no hot standby, no default_transaction_read_only.
WRITABLE = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"

# What a failed append raises from the driver: the appends' connection is dropped after any.
# asyncpg answers a call on a connection the server has just terminated with either
# ConnectionDoesNotExistError (a PostgresError) or InternalClientError, depending on timing.
_APPEND_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    *DRIVER_ERRORS,
)


async def _driver(connection: AsyncConnection) -> Any:
    """The asyncpg connection under `connection`, outside any transaction block (so that each
    append commits on its own before its call returns)."""
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None or driver.is_in_transaction():
        raise Unavailable("the appends' connection is not idle outside a transaction")
    return driver


class EventStore(StoreReads):
    """One instance's store. Appends must come from a single writer (application.writer)."""

    # -- writing -----------------------------------------------------------------------------

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        # The single writer's connection, held from its first append to `close` (or a failure):
        # a pool checkout and SQLAlchemy's statement path cost ~250 us of CPU per commit, more
        # than the commit itself (shadowline bench append, issue 15).
        self._appender: tuple[AsyncConnection, Any] | None = None
        self._appending = False
        # The probe's own connection, held too, and made outside the pool (an engine without
        # one): a probe waiting for a pooled connection behind a burst of reads would time out,
        # and a master with a usable database would skip its heartbeat for load alone.
        self._probes = create_async_engine(engine.url, poolclass=NullPool)
        self._prober: AsyncConnection | None = None
        self._probing = asyncio.Lock()  # a heartbeat's probe and the writer's may overlap

    async def append(self, batch: Sequence[Event], expected: int) -> None:
        """Append events expected+1.. and their current-state rows, atomically.

        One call of `shadowline_append` does it all (one statement, one round trip and one
        commit per batch): the compare-and-set on the head, the events, and the items rows it
        derives from them. It goes straight to the driver connection, outside any transaction
        block: a statement is atomic, so it commits on its own before the call returns.
        """
        if not batch:
            return
        try:
            appended = await self._call_append((expected, *columns(batch)))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise ConcurrentWriter(f"append refused by the database: {error}") from error
        except _APPEND_ERRORS as error:
            raise Unavailable(
                f"event store unavailable: {error.__class__.__name__}: {error}"
            ) from error
        if appended is not True:
            raise ConcurrentWriter(
                f"the store's head is no longer at {expected}: another writer appended"
            )

    async def _call_append(self, args: tuple[Any, ...]) -> Any:
        if self._appending:
            # Another append is in flight (the writer is single, a test may not be): this one
            # takes a connection of its own, and the database decides between them.
            async with self._connect(autocommit=True) as connection:
                return await (await _driver(connection)).fetchval(APPEND, *args)
        self._appending = True
        try:
            driver = await self._append_connection()
            return await driver.fetchval(APPEND, *args)
        except asyncpg.IntegrityConstraintViolationError:
            raise  # refused by the database; the connection is fine
        except BaseException:  # its state is unknown (cancelled, broken): never reuse it
            await self.close(invalidate=True)
            raise
        finally:
            self._appending = False

    async def _append_connection(self) -> Any:
        if self._appender is None:
            connection = await self.engine.connect()
            try:
                driver = await _driver(connection)
            except BaseException:
                await connection.close()
                raise
            self._appender = (connection, driver)
        return self._appender[1]

    async def close(self, *, invalidate: bool = False) -> None:
        """Give the appends' connection back to the pool (once the writer has stopped)."""
        await self._drop_prober()
        held, self._appender = self._appender, None
        if held is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                await held[0].invalidate()
            await held[0].close()

    async def probe(self) -> None:
        """Unavailable unless the database answers and would take a write now (not read-only,
        not in recovery): what an instance's heartbeat vouches for (application.database)."""
        async with self._probing:  # one connection: one statement at a time
            await self._probe()

    async def _probe(self) -> None:
        try:
            if self._prober is None:
                self._prober = await self._probes.connect()
                await self._prober.execution_options(isolation_level="AUTOCOMMIT")
            writable = await self._prober.scalar(text(WRITABLE))
        except BaseException as error:  # cancelled (timed out) or failed: never reuse it
            await self._drop_prober()
            if isinstance(error, DRIVER_ERRORS):
                raise Unavailable(f"event store unavailable: {type(error).__name__}") from error
            raise
        if not writable:
            raise Unavailable("the database is read-only")

    async def recycle(self) -> None:
        """Drop every connection made before now (the database is back after a failure: they
        are dead, and the first request on each would fail and count as a new failure)."""
        async with self._probing:
            await self._drop_prober()
        await self.close(invalidate=True)
        await self.engine.dispose()

    async def _drop_prober(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            with contextlib.suppress(Exception):
                await prober.invalidate()
                await prober.close()
        await self._probes.dispose()

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
