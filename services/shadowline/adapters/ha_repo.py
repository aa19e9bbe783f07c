"""The instance's role, epoch and what it knows of its peer, in its own database."""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy import func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowline.adapters import hook_journal, switch_repo
from shadowline.adapters.store_sql import APPEND, columns, connected, reason
from shadowline.adapters.tables import ha_state, instance_state, relay_cursor
from shadowline.domain.errors import Conflict
from shadowline.domain.ha import HaRecord, RoleChange

__all__ = ["HaRecord", "HaRepository"]

T = TypeVar("T")


class HaRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self) -> HaRecord:
        query = (
            select(instance_state.c.role, instance_state.c.epoch, ha_state)
            .select_from(instance_state.join(ha_state, true()))
            .where(instance_state.c.id == 1, ha_state.c.id == 1)
        )
        async with self._connect() as c:
            row = (await c.execute(query)).one()
        return HaRecord(
            row.role,
            row.epoch,
            row.auto_confirm,
            row.master_instance,
            row.master_url,
            row.shadow_instance,
            row.shadow_url,
            row.shadow_state,
            row.shadow_position,
            row.shadow_seen_at,
            row.maintenance,
        )

    async def change_role(self, change: RoleChange) -> int:
        """Commit a role change as one transaction (see domain.ha.RoleChange); returns how
        many events it quarantined. Conflict, with nothing changed, when the role is no longer
        one of `change.expect` or the database refuses a step (its sentence says why)."""
        try:
            async with self._connect(write=True) as c:
                return await self._change_role(c, change)
        except IntegrityError as error:  # the functions of migration 0006 explain refusals
            raise Conflict(f"the store refused the role change: {reason(error)}") from error

    def _connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        return connected(self._engine, "event store", write=write)

    async def _change_role(self, c: AsyncConnection, change: RoleChange) -> int:
        moved = 0
        before = await _role_before(c)
        if change.quarantine_after is not None:
            assert change.epoch is not None, "a recovery enters a new epoch"
            fork = change.quarantine_after
            quarantine = c.scalar(select(func.shadowline_quarantine_after(fork, change.epoch)))
            moved = int(await _refused_as("the quarantine", quarantine) or 0)
        if change.fence is not None:
            await _refused_as("the fence", c.scalar(select(func.shadowline_fence(change.fence))))
        if change.relay_cursor is not None:
            await c.execute(
                update(relay_cursor)
                .where(relay_cursor.c.id == 1)
                .values(position=change.relay_cursor, updated_at=func.now())
            )
        values: dict[str, Any] = {"role": str(change.role), "updated_at": func.now()}
        if change.epoch is not None:
            values["epoch"] = change.epoch
        taken = await c.execute(
            update(instance_state)
            .where(instance_state.c.id == 1, instance_state.c.role.in_(map(str, change.expect)))
            .values(**values)
        )
        if taken.rowcount != 1:  # compare-and-set: never overwrite a role blindly
            expected = " or ".join(sorted(change.expect))
            raise Conflict(f"this instance is no longer in role {expected}")
        await _with_role_change(c, change, before.epoch, before.role)
        if change.ha:
            await c.execute(
                update(ha_state)
                .where(ha_state.c.id == 1)
                .values(**change.ha, updated_at=func.now())
            )
        if change.event is not None:
            # Through the store's own append function: the same compare-and-set on the head,
            # the same term rule, in this transaction (a role taken without its event, or the
            # reverse, cannot be left behind by a crash).
            expected_head = change.event.position - 1
            appended = (
                await c.exec_driver_sql(APPEND, (expected_head, *columns([change.event])))
            ).scalar()
            if appended is not True:
                raise Conflict(f"the store's head is no longer at {expected_head}")
        return moved

    async def update(self, **ha: Any) -> None:
        async with self._connect(write=True) as c:
            await c.execute(
                update(ha_state).where(ha_state.c.id == 1).values(**ha, updated_at=func.now())
            )

    async def register_shadow(self, instance: str, url: str, confirmed: bool) -> str:
        """Record a joining shadow; refuses a second one. Returns its stored state."""
        async with self._connect(write=True) as c:
            current = (
                await c.execute(select(ha_state).where(ha_state.c.id == 1).with_for_update())
            ).one()
            if current.shadow_instance not in (None, instance):
                raise Conflict(
                    f"this master already has shadow {current.shadow_instance!r}; a master has at "
                    "most one shadow (remove it with DELETE /ha/shadow first)"
                )
            state = current.shadow_state if current.shadow_instance == instance else None
            state = state or ("confirmed" if confirmed else "pending")
            await c.execute(
                update(ha_state)
                .where(ha_state.c.id == 1)
                .values(
                    shadow_instance=instance,
                    shadow_url=url,
                    shadow_state=state,
                    shadow_seen_at=func.now(),
                    updated_at=func.now(),
                )
            )
        return str(state)

    async def confirm_shadow(self, instance: str | None) -> str:
        async with self._connect(write=True) as c:
            current = (
                await c.execute(select(ha_state).where(ha_state.c.id == 1).with_for_update())
            ).one()
            if current.shadow_instance is None:
                raise Conflict("no shadow has joined: there is nothing to confirm")
            if instance is not None and instance != current.shadow_instance:
                raise Conflict(
                    f"the shadow that joined is {current.shadow_instance!r}, not {instance!r}"
                )
            if current.shadow_state == "confirmed":
                raise Conflict(f"shadow {current.shadow_instance!r} is already confirmed")
            await c.execute(
                update(ha_state)
                .where(ha_state.c.id == 1)
                .values(shadow_state="confirmed", updated_at=func.now())
            )
        return str(current.shadow_instance)

    async def forget_shadow(self) -> str:
        async with self._connect(write=True) as c:
            current = (
                await c.execute(select(ha_state).where(ha_state.c.id == 1).with_for_update())
            ).one()
            if current.shadow_instance is None:
                raise Conflict("this master has no shadow to remove")
            await c.execute(
                update(ha_state)
                .where(ha_state.c.id == 1)
                .values(
                    shadow_instance=None,
                    shadow_url=None,
                    shadow_state=None,
                    shadow_position=None,
                    shadow_seen_at=None,
                    updated_at=func.now(),
                )
            )
        return str(current.shadow_instance)

    async def shadow_seen(self, instance: str, position: int) -> bool:
        """Record the position a shadow reports; False when that shadow is not ours."""
        async with self._connect(write=True) as c:
            moved = await c.execute(
                update(ha_state)
                .where(ha_state.c.id == 1, ha_state.c.shadow_instance == instance)
                .values(
                    shadow_position=func.greatest(
                        func.coalesce(ha_state.c.shadow_position, 0), position
                    ),
                    shadow_seen_at=func.now(),
                )
            )
        return moved.rowcount == 1


async def _role_before(c: AsyncConnection) -> Any:
    """The role and epoch before a change, locked until it commits: the hook's row names it."""
    query = select(instance_state.c.role, instance_state.c.epoch).where(instance_state.c.id == 1)
    return (await c.execute(query.with_for_update())).one()


async def _refused_as(step: str, work: Awaitable[T]) -> T:
    """The refusal of one step, named as the store names it outside a role change."""
    try:
        return await work
    except IntegrityError as error:
        raise Conflict(f"the store refused {step}: {reason(error)}") from error


async def _with_role_change(
    c: AsyncConnection, change: RoleChange, epoch_before: int, role_before: str
) -> None:
    """What commits with every role change, the one place they all pass: its hook's row, and
    the cancellation of a scheduled switch (one never outlives the role it was taken in)."""
    await hook_journal.record(
        c, epoch=change.epoch or epoch_before, role=str(change.role),
        previous_role=role_before, cause=change.cause,
    )  # fmt: skip
    await switch_repo.cancel_open(
        c, f"cancelled: the role changed to {change.role} ({change.cause or 'unknown'})"
    )
