"""Which event a broker config command produced, if any (the master's idempotency check)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.tables import events
from shadowline.domain.errors import Unavailable

# Spelled out as the partial index of migration 0004 spells it: the planner uses a partial
# expression index only if the query repeats its predicate and expression literally (a bound
# parameter in place of 'command_id' would hide both from it).
_BY_COMMAND = text("metadata ? 'command_id' AND metadata->>'command_id' = :command_id")


@dataclass(frozen=True, slots=True)
class Applied:
    """The event a command produced: enough to answer the command again exactly."""

    type: str
    kind: str
    name: str
    version: int
    position: int
    epoch: int


class CommandLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def applied(self, command_id: str) -> Applied | None:
        query = select(
            events.c.type,
            events.c.kind,
            events.c.name,
            events.c.version,
            events.c.position,
            events.c.epoch,
        ).where(_BY_COMMAND.bindparams(command_id=command_id))
        try:
            async with self._engine.connect() as connection:
                row = (await connection.execute(query)).first()
        except (OperationalError, InterfaceError, DBAPIError, OSError, TimeoutError) as error:
            raise Unavailable(f"event store unavailable: {error.__class__.__name__}") from error
        return None if row is None else Applied(*row)
