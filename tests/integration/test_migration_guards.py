"""Migration 0006 on a database that already has events: it upgrades from 0004 (the head's epoch
filled in, an older release's app role stripped of its direct writes and given the functions),
the store works and verifies afterwards, and it downgrades and upgrades again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
from alembic import command
from alembic.config import Config

from shadowline.adapters.migrate import create_database, drop_database
from shadowline.adapters.resources import migrations_dir
from shadowline.application import audit
from shadowline.domain.events import GENESIS
from tests.conftest import database_url
from tests.integration.chained import as_role, chained, quoted, store_at

pytestmark = pytest.mark.integration

# What `shadowline migrate --app-role` granted before 0006.
OLD_GRANTS = (
    "GRANT SELECT, INSERT ON events, snapshots TO {role}",
    "GRANT SELECT, UPDATE ON store_head, instance_state, ha_state, relay_cursor TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON items TO {role}",
    "GRANT SELECT ON quarantine TO {role}",
    "GRANT EXECUTE ON FUNCTION shadowline_quarantine_after(bigint, integer) TO {role}",
)


def alembic(url: str, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    getattr(command, action)(config, revision)


async def migrate(url: str, action: str, revision: str) -> None:
    # alembic's env runs its own event loop: off this one.
    await asyncio.to_thread(alembic, url, action, revision)


@pytest.fixture
async def old_database(postgres: None) -> AsyncIterator[tuple[str, str]]:
    """A database at revision 0004 holding three events of epoch 1, written as 0004's append did,
    and an app role with 0004's grants: (url, role)."""
    url = database_url(f"sl_mig_{uuid.uuid4().hex[:12]}")
    role = f"sl_old_{uuid.uuid4().hex[:12]}"
    await create_database(url)
    owner = await asyncpg.connect(url)
    try:
        await migrate(url, "upgrade", "0004")
        await owner.execute(f"CREATE ROLE {quoted(role)} LOGIN")
        for grant in OLD_GRANTS:
            await owner.execute(grant.format(role=quoted(role)))
        for e in chained(1, [1, 1, 1], GENESIS):
            await owner.execute(
                "INSERT INTO events (position, id, epoch, type, kind, name, version, data, "
                "metadata, recorded_at, chain) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                e.position, e.id, e.epoch, e.type, e.kind, e.name, e.version,
                orjson.dumps(e.data).decode(), orjson.dumps(e.metadata).decode(), e.recorded_at,
                e.chain,
            )  # fmt: skip
            await owner.execute(
                "INSERT INTO items VALUES ($1, $2, $3, true, $4, $5, $6) ON CONFLICT (kind, name) "
                "DO UPDATE SET version = excluded.version, value = excluded.value, "
                "position = excluded.position, updated_at = excluded.updated_at",
                e.kind, e.name, e.version, orjson.dumps(e.data).decode(), e.position,
                e.recorded_at,
            )  # fmt: skip
            await owner.execute(
                "UPDATE store_head SET position = $1, chain = $2", e.position, e.chain
            )
        yield url, role
    finally:
        await owner.execute(f"DROP OWNED BY {quoted(role)}")
        await owner.execute(f"DROP ROLE {quoted(role)}")
        await owner.close()
        await drop_database(url)


async def test_the_migration_upgrades_a_store_with_events_and_closes_the_old_roles_writes(
    old_database: tuple[str, str],
) -> None:
    url, role = old_database

    await migrate(url, "upgrade", "head")

    app = await asyncpg.connect(as_role(url, role))
    try:
        for statement in (
            "UPDATE items SET version = 9",
            "UPDATE store_head SET position = 0",
            "INSERT INTO events (position, id, epoch, type, metadata, recorded_at, chain) "
            "VALUES (4, gen_random_uuid(), 1, 'Probe', '{}', now(), '')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement)
    finally:
        await app.close()
    async with store_at(as_role(url, role)) as store:
        head = await store.head()
        assert (head.position, head.epoch) == (3, 1)
        await store.append(chained(4, [1], head.chain), 3)
        verdict = await audit.verify(store, None, "")
    assert verdict["ok"] is True, verdict
    assert (verdict["checked"], verdict["items"]) == (4, 3)


async def test_the_migration_downgrades_to_0004_keeping_the_log_and_upgrades_again(
    old_database: tuple[str, str],
) -> None:
    url, _ = old_database
    await migrate(url, "upgrade", "head")
    async with store_at(url) as store:
        await store.append(chained(4, [1], (await store.head()).chain), 3)

    await migrate(url, "downgrade", "0004")

    owner = await asyncpg.connect(url)
    try:
        assert await owner.fetchval("SELECT count(*) FROM events") == 4
        assert await owner.fetchval("SELECT position FROM store_head") == 4
        functions = await owner.fetch(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'shadowline_%' ORDER BY 1"
        )
        assert [f["proname"] for f in functions] == [
            "shadowline_quarantine_after",
            "shadowline_refuse_change",
        ]
    finally:
        await owner.close()

    await migrate(url, "upgrade", "head")

    async with store_at(url) as store:
        assert (await store.head()).epoch == 1
        assert (await audit.verify(store, None, ""))["ok"] is True
