"""Which (epoch, role) the role-change hook was run for, in the instance's own database (table
role_hooks, migration 0007).

`record` runs inside the role change's own transaction (adapters.ha_repo), so a role taken and
its hook's row commit together or not at all; the runner (application.hooks) then marks each
row as it goes, each mark committed before the next step.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.store_sql import DRIVER_ERRORS
from shadowline.adapters.tables import role_hooks
from shadowline.domain.errors import Unavailable
from shadowline.domain.hooks import Cause, HookRecord


async def record(
    c: AsyncConnection, *, epoch: int, role: str, previous_role: str, cause: str | None
) -> None:
    """The row of a role change, pending (a second change to the same (epoch, role) -- none
    is known -- keeps the first row, so its hook never runs twice)."""
    await c.execute(
        insert(role_hooks)
        .values(
            epoch=epoch,
            role=role,
            previous_role=previous_role,
            cause=cause or Cause.UNKNOWN,
            state="pending",
            attempts=0,
            recorded_at=func.now(),
        )
        .on_conflict_do_nothing(index_elements=["epoch", "role"])
    )


class HookJournal:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def unfinished(self) -> list[HookRecord]:
        """Rows not done yet (pending, or running when the process stopped), oldest first."""
        query = (
            select(role_hooks)
            .where(role_hooks.c.state.in_(("pending", "running")))
            .order_by(role_hooks.c.seq)
        )
        return [_record(row) for row in await self._rows(query)]

    async def listing(self, limit: int = 20) -> list[HookRecord]:
        """The latest rows, newest first (GET /ha shows them)."""
        query = select(role_hooks).order_by(role_hooks.c.seq.desc()).limit(limit)
        return [_record(row) for row in await self._rows(query)]

    async def started(self, epoch: int, role: str) -> int:
        """Mark the row running, one attempt more; returns the attempt (1 the first time)."""
        attempts = await self._update(
            epoch, role, state="running", attempts=role_hooks.c.attempts + 1,
            started_at=func.now(), finished_at=None,
        )  # fmt: skip
        return attempts

    async def finished(
        self, epoch: int, role: str, state: str, exit_code: int | None, detail: str
    ) -> None:
        await self._update(
            epoch, role, state=state, exit_code=exit_code, detail=detail[:2000],
            finished_at=func.now(),
        )  # fmt: skip

    async def _update(self, epoch: int, role: str, **values: object) -> int:
        statement = (
            update(role_hooks)
            .where(role_hooks.c.epoch == epoch, role_hooks.c.role == role)
            .values(**values)
            .returning(role_hooks.c.attempts)
        )
        try:
            async with self._engine.begin() as c:
                return int((await c.execute(statement)).scalar_one())
        except DRIVER_ERRORS as error:
            raise Unavailable(f"hook journal unavailable: {error.__class__.__name__}") from error

    async def _rows(self, query: object) -> list[object]:
        try:
            async with self._engine.connect() as c:
                return list(await c.execute(query))  # type: ignore[call-overload]
        except DRIVER_ERRORS as error:
            raise Unavailable(f"hook journal unavailable: {error.__class__.__name__}") from error


def _record(row: object) -> HookRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return HookRecord(
        epoch=r["epoch"],
        role=r["role"],
        previous_role=r["previous_role"],
        cause=r["cause"],
        state=r["state"],
        attempts=r["attempts"],
        exit_code=r["exit_code"],
        detail=r["detail"],
    )
