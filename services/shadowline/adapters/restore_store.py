"""The target of a restore: one transaction on the instance's database (the instance stopped),
and the mark a restored store leaves for the instance that starts on it.

The events go in through the store's own functions (shadowline_append, shadowline_fence), as
the role changes do (adapters.ha_repo): the least-privilege app role can restore too, and what
is served is derived from the events by the database itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.store_sql import APPEND, DRIVER_ERRORS, LogView, columns, reason
from shadowline.adapters.tables import (
    events,
    ha_state,
    instance_state,
    items,
    snapshots,
    store_head,
)
from shadowline.application.ports.restore import Target
from shadowline.domain import audit
from shadowline.domain.errors import BackupRefused, Unavailable
from shadowline.domain.events import Event
from shadowline.domain.restore import RESTORED

# Held by a restore's transaction and taken by an instance's start-up check: an instance
# started while a restore runs waits for it, then sees what it restored (and whose cluster).
RESTORE_LOCK = text("SELECT pg_advisory_xact_lock(8316003795934342258)")  # b"shadowlr"

# Client sessions on this database other than ours: a running instance holds a few.
OTHERS = text(
    "SELECT coalesce(application_name, '') FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend'"
)


class _Session:
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def target(self) -> Target:
        c = self._c
        # No row lock (the app role may not take one): the append's compare-and-set on the head
        # refuses the restore if anything wrote in between.
        head = (await c.execute(select(store_head).where(store_head.c.id == 1))).one()
        role = (await c.execute(select(instance_state).where(instance_state.c.id == 1))).one()
        ha = (await c.execute(select(ha_state).where(ha_state.c.id == 1))).one()
        held = await c.scalar(
            select(exists(select(events.c.position)) | exists(select(items.c.kind)))
        ) or await c.scalar(select(exists(select(snapshots.c.position))))
        others = tuple((await c.execute(OTHERS)).scalars())
        return Target(
            role=role.role,
            epoch=role.epoch,
            ha_peer=ha.shadow_instance or ha.master_instance or ha.master_url,
            position=head.position,
            holds_data=bool(held),
            others=others,
        )

    async def fence(self, epoch: int) -> None:
        await self._c.scalar(select(func.shadowline_fence(epoch)))

    async def append(self, batch: Sequence[Event], expected: int) -> None:
        result = await self._c.exec_driver_sql(APPEND, (expected, *columns(batch)))
        if result.scalar() is not True:
            raise BackupRefused(f"the target's head moved from {expected}: another writer?")

    async def served(self) -> audit.Rows:
        return await LogView(self._c).served()

    async def set_epoch(self, epoch: int) -> None:
        """The instance writes on in the restored head's term (its writer's epoch)."""
        await self._c.execute(
            update(instance_state)
            .where(instance_state.c.id == 1, instance_state.c.role == "standalone")
            .values(epoch=func.greatest(instance_state.c.epoch, epoch), updated_at=func.now())
        )


class RestoreTarget:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def session(self) -> AsyncIterator[_Session]:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(RESTORE_LOCK)
                yield _Session(connection)
        except IntegrityError as error:  # the store's functions say why they refused
            raise BackupRefused(f"the target store refused the restore: {reason(error)}") from error
        except DRIVER_ERRORS as error:
            raise Unavailable(f"target database unavailable: {error}") from error


async def restored_as(engine: AsyncEngine) -> dict[str, Any] | None:
    """The data of the store's newest BackupRestored event (None: never restored)."""
    query = (
        select(events.c.data)
        .where(events.c.type == RESTORED)
        .order_by(events.c.position.desc())
        .limit(1)
    )
    async with engine.begin() as c:
        await c.execute(RESTORE_LOCK)  # a restore under way: wait for its outcome
        data = await c.scalar(query)
    return data if isinstance(data, dict) else None
