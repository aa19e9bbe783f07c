"""The instance's role, epoch and what it knows of its peer, in its own database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, true, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.tables import ha_state, instance_state
from shadowline.domain.errors import Conflict


@dataclass(frozen=True, slots=True)
class HaRecord:
    role: str
    epoch: int
    auto_confirm: bool
    master_instance: str | None
    master_url: str | None
    shadow_instance: str | None
    shadow_url: str | None
    shadow_state: str | None
    shadow_position: int | None
    shadow_seen_at: datetime | None
    maintenance: bool = False


class HaRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self) -> HaRecord:
        query = (
            select(instance_state.c.role, instance_state.c.epoch, ha_state)
            .select_from(instance_state.join(ha_state, true()))
            .where(instance_state.c.id == 1, ha_state.c.id == 1)
        )
        async with self._engine.connect() as c:
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

    async def set_role(
        self, role: str, *, expect: set[str], epoch: int | None = None, **ha: Any
    ) -> None:
        """Change the role with a compare-and-set on the current one (never overwrites blindly)."""
        values: dict[str, Any] = {"role": role, "updated_at": func.now()}
        if epoch is not None:
            values["epoch"] = epoch
        async with self._engine.begin() as c:
            moved = await c.execute(
                update(instance_state)
                .where(instance_state.c.id == 1, instance_state.c.role.in_(expect))
                .values(**values)
            )
            if moved.rowcount != 1:
                raise Conflict(f"this instance is no longer in role {' or '.join(sorted(expect))}")
            if ha:
                await c.execute(
                    update(ha_state).where(ha_state.c.id == 1).values(**ha, updated_at=func.now())
                )

    async def update(self, **ha: Any) -> None:
        async with self._engine.begin() as c:
            await c.execute(
                update(ha_state).where(ha_state.c.id == 1).values(**ha, updated_at=func.now())
            )

    async def register_shadow(self, instance: str, url: str, confirmed: bool) -> str:
        """Record a joining shadow; refuses a second one. Returns its stored state."""
        async with self._engine.begin() as c:
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
        async with self._engine.begin() as c:
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
        async with self._engine.begin() as c:
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
        async with self._engine.begin() as c:
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
