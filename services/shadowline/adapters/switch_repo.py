"""Scheduled switches of roles in the master's own database (table switch_schedule, migration
0008). Each step commits before the next: a schedule taken, claimed (running) before the
handover starts, then its outcome; `cancel_open` runs inside every role change's transaction
(adapters.ha_repo), so a schedule never outlives the role it was taken in."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters.store_sql import connected
from shadowline.adapters.tables import switch_schedule as t
from shadowline.domain.errors import Conflict
from shadowline.domain.switch import CANCELLED, OPEN, UNKNOWN, ScheduledSwitch

REASON_CHARS = 2000


async def cancel_open(c: AsyncConnection, reason: str) -> None:
    """Cancel a schedule not started yet, in the caller's transaction (a role change)."""
    await c.execute(
        update(t)
        .where(t.c.state == "scheduled")
        .values(state=CANCELLED, reason=reason[:REASON_CHARS], finished_at=func.now())
    )


class SwitchSchedules:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def latest(self) -> ScheduledSwitch | None:
        async with self._connect() as c:
            row = (await c.execute(select(t).order_by(t.c.id.desc()).limit(1))).first()
        return _switch(row._mapping) if row is not None else None

    async def take(self, epoch: int, due_at: datetime, actor: str) -> ScheduledSwitch:
        """A new schedule; Conflict when one is scheduled or running already."""
        values = {"epoch": epoch, "due_at": due_at, "requested_by": actor, "state": "scheduled"}
        try:
            async with self._connect(write=True) as c:
                row = (
                    await c.execute(
                        insert(t).values(**values, requested_at=func.now()).returning(t)
                    )
                ).one()
        except IntegrityError:
            open_ = await self.latest()
            when = f" for {open_.doc()['at']} ({open_.state})" if open_ and open_.open else ""
            raise Conflict(
                f"a switch of roles is already scheduled{when}: cancel it first "
                "(DELETE /ha/switch-roles)"
            ) from None
        return _switch(row._mapping)

    async def cancel(self, reason: str) -> ScheduledSwitch | None:
        """Cancel the schedule not started yet; None when there is none."""
        return await self._set(
            t.c.state == "scheduled", state=CANCELLED, reason=reason[:REASON_CHARS]
        )

    async def claim(self, id_: int, epoch: int) -> ScheduledSwitch | None:
        """Mark the schedule running, if it is still scheduled for this epoch."""
        return await self._set(
            (t.c.id == id_) & (t.c.state == "scheduled") & (t.c.epoch == epoch),
            state="running",
            finished=False,
        )

    async def finish(self, id_: int, state: str, reason: str | None) -> None:
        await self._set(
            (t.c.id == id_) & (t.c.state == "running"),
            state=state,
            reason=reason[:REASON_CHARS] if reason else None,
        )

    async def interrupted(self) -> ScheduledSwitch | None:
        """At start: a schedule left running by a stopped process ends as unknown (the promote
        may have reached the shadow before the stop)."""
        return await self._set(
            t.c.state == "running",
            state=UNKNOWN,
            reason="the instance stopped while the switch ran: the shadow may have been promoted",
        )

    async def _set(
        self, where: Any, *, finished: bool = True, **values: Any
    ) -> ScheduledSwitch | None:
        if finished:
            values["finished_at"] = func.now()
        async with self._connect(write=True) as c:
            row = (await c.execute(update(t).where(where).values(**values).returning(t))).first()
        return _switch(row._mapping) if row is not None else None

    def _connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        return connected(self._engine, "switch schedule", write=write)


def _switch(r: Any) -> ScheduledSwitch:
    return ScheduledSwitch(
        id=r["id"], epoch=r["epoch"], due_at=r["due_at"], requested_by=r["requested_by"],
        state=r["state"], reason=r["reason"], requested_at=r["requested_at"],
        finished_at=r["finished_at"],
    )  # fmt: skip


__all__ = ["OPEN", "SwitchSchedules", "cancel_open"]
