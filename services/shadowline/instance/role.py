"""The instance's role and epoch as this process knows them, loaded from its own database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.tables import instance_state

WRITABLE_ROLES = frozenset({"standalone", "master"})


@dataclass(slots=True)
class RoleState:
    role: str = "standalone"
    epoch: int = 1
    master_url: str | None = None

    @property
    def writable(self) -> bool:
        return self.role in WRITABLE_ROLES

    async def load(self, engine: AsyncEngine) -> None:
        async with engine.connect() as c:
            row = (await c.execute(select(instance_state).where(instance_state.c.id == 1))).one()
        self.role, self.epoch = row.role, row.epoch
