"""Local-only data of one instance: users and the local config kinds. Never replicated."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.passwords import hash_password
from shadowline.adapters.tables import local_config, users
from shadowline.domain.errors import AlreadyExists, NotFound, PreconditionFailed, VersionConflict
from shadowline.domain.users import ROLES, User, check_credentials, password_problem

__all__ = ["ROLES", "LocalConfig", "User", "Users", "check_credentials", "password_problem"]


class Users:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, name: str) -> User | None:
        async with self._engine.connect() as c:
            row = (await c.execute(select(users).where(users.c.name == name))).one_or_none()
        return None if row is None else User(row.name, row.role, row.password_hash)

    async def all(self) -> list[User]:
        async with self._engine.connect() as c:
            rows = await c.execute(select(users).order_by(users.c.name))
        return [User(r.name, r.role, r.password_hash) for r in rows]

    async def count(self) -> int:
        async with self._engine.connect() as c:
            return int(await c.scalar(select(func.count()).select_from(users)) or 0)

    async def add(self, name: str, role: str, password: str) -> None:
        check_credentials(name, password)
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        async with self._engine.begin() as c:
            result = await c.execute(
                pg_insert(users)
                .values(
                    name=name,
                    role=role,
                    password_hash=hash_password(password),
                    created_at=func.now(),
                    updated_at=func.now(),
                )
                .on_conflict_do_nothing()
            )
            if result.rowcount != 1:
                raise AlreadyExists(f"user {name!r} already exists")

    async def set_password(self, name: str, password: str) -> None:
        check_credentials(password=password)
        async with self._engine.begin() as c:
            result = await c.execute(
                update(users)
                .where(users.c.name == name)
                .values(password_hash=hash_password(password), updated_at=func.now())
            )
        if result.rowcount != 1:
            raise NotFound(f"no user {name!r}")

    async def remove(self, name: str) -> None:
        async with self._engine.begin() as c:
            result = await c.execute(delete(users).where(users.c.name == name))
        if result.rowcount != 1:
            raise NotFound(f"no user {name!r}")

    async def bootstrap_admin(self, password: str) -> bool:
        """Create `admin` when the instance has no users at all; True if it did."""
        check_credentials("admin", password)
        async with self._engine.begin() as c:
            await c.execute(select(func.pg_advisory_xact_lock(7438120992)))
            if await c.scalar(select(func.count()).select_from(users)):
                return False
            await c.execute(
                users.insert().values(
                    name="admin",
                    role="admin",
                    password_hash=hash_password(password),
                    created_at=func.now(),
                    updated_at=func.now(),
                )
            )
        return True


class LocalConfig:
    """The local kinds (log-level, ui-certificate, snc): versioned, but outside the event log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, kind: str, name: str) -> tuple[Any, int] | None:
        async with self._engine.connect() as c:
            row = (
                await c.execute(
                    select(local_config.c.value, local_config.c.version).where(
                        local_config.c.kind == kind, local_config.c.name == name
                    )
                )
            ).one_or_none()
        return None if row is None else (row.value, row.version)

    async def all(self) -> dict[str, Any]:
        async with self._engine.connect() as c:
            rows = await c.execute(
                select(local_config).order_by(local_config.c.kind, local_config.c.name)
            )
        return {f"{r.kind}/{r.name}": r.value for r in rows}

    async def put(
        self,
        kind: str,
        name: str,
        value: Any,
        expected: int | None,
        actor: str,
        only_if_absent: bool = False,
    ) -> tuple[int, bool]:
        async with self._engine.begin() as c:
            current = await c.scalar(
                select(local_config.c.version)
                .where(local_config.c.kind == kind, local_config.c.name == name)
                .with_for_update()
            )
            if expected is not None and expected != current:
                raise VersionConflict(f"{kind}/{name}", expected, current)
            if only_if_absent and current is not None:
                raise PreconditionFailed(f"{kind}/{name}", current)
            version = (current or 0) + 1
            stmt = pg_insert(local_config).values(
                kind=kind,
                name=name,
                value=value,
                version=version,
                updated_at=func.now(),
                updated_by=actor,
            )
            await c.execute(
                stmt.on_conflict_do_update(
                    index_elements=[local_config.c.kind, local_config.c.name],
                    set_={
                        k: stmt.excluded[k]
                        for k in ("value", "version", "updated_at", "updated_by")
                    },
                )
            )
        return version, current is None

    async def delete(self, kind: str, name: str, expected: int | None) -> int:
        async with self._engine.begin() as c:
            current = await c.scalar(
                select(local_config.c.version)
                .where(local_config.c.kind == kind, local_config.c.name == name)
                .with_for_update()
            )
            if current is None:
                raise NotFound(f"{kind}/{name} does not exist")
            if expected is not None and expected != current:
                raise VersionConflict(f"{kind}/{name}", expected, current)
            await c.execute(
                delete(local_config).where(local_config.c.kind == kind, local_config.c.name == name)
            )
        return int(current)
