"""The database itself keeps the log append-only: a trigger for everyone, grants for the app role.

And when someone with the power to switch the trigger off rewrites history anyway, the hash
chain names the position that was touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shadowline.domain.events import GENESIS, verify_chain
from tests.conftest import started
from tests.integration.chained import as_role, login_role

pytestmark = pytest.mark.integration

META = {"actor": "test", "request_id": "r-1"}
REFUSED_STATEMENTS = (
    "UPDATE {table} SET position = position",
    "DELETE FROM {table}",
    "TRUNCATE {table}",
)


def sub(region: str) -> dict[str, str]:
    return {"region": region, "subaccount_id": "sa-1"}


async def seed(url: str, count: int = 3) -> None:
    """`count` events and a snapshot at the last of them, written by a running instance."""
    async with started(url) as inst:
        for i in range(count):
            await inst.service.put("subaccount", f"acme-{i}", sub(f"r{i}"), None, META)
        await inst.snapshotter.take(count)


async def counts(connection: asyncpg.Connection) -> tuple[int, int]:
    return (
        await connection.fetchval("SELECT count(*) FROM events"),
        await connection.fetchval("SELECT count(*) FROM snapshots"),
    )


@pytest.fixture
async def app_role(db_url: str) -> AsyncIterator[str]:
    """A uniquely named LOGIN role holding only the application's grants on this database."""
    async with login_role(db_url) as role:
        yield role


# -- the trigger -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["events", "snapshots"])
async def test_the_database_refuses_update_delete_and_truncate_even_for_the_owner(
    db_url: str, table: str
) -> None:
    await seed(db_url)
    owner = await asyncpg.connect(db_url)
    try:
        owns = "SELECT tableowner = current_user FROM pg_tables WHERE tablename = $1"
        assert await owner.fetchval(owns, table)
        before = await counts(owner)
        for statement in REFUSED_STATEMENTS:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(statement.format(table=table))
        assert await counts(owner) == before == (3, 1)
    finally:
        await owner.close()


# -- the grants --------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["events", "snapshots"])
async def test_the_app_role_is_refused_update_delete_and_truncate_by_its_grants(
    db_url: str, app_role: str, table: str
) -> None:
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        for statement in REFUSED_STATEMENTS:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await app.execute(statement.format(table=table))
    finally:
        await app.close()


APPEND_ONE = (
    "SELECT shadowline_append(0, ARRAY[1::bigint], ARRAY[gen_random_uuid()], ARRAY[1], "
    "ARRAY['Probe'], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::int], ARRAY[NULL::jsonb], "
    "ARRAY['{}'::jsonb], ARRAY[now()], ARRAY[decode(repeat('00', 32), 'hex')], "
    "ARRAY[NULL::bytea])"
)


async def test_the_app_role_appends_events_through_the_append_function_only(
    db_url: str, app_role: str
) -> None:
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await app.execute(
                "INSERT INTO events (position, id, epoch, type, metadata, recorded_at, chain) "
                "VALUES (1, gen_random_uuid(), 1, 'Probe', '{}', now(), "
                "decode(repeat('00', 32), 'hex'))"
            )
        transaction = app.transaction()
        await transaction.start()
        try:
            assert await app.fetchval(APPEND_ONE) is True
            assert await app.fetchval("SELECT type FROM events WHERE position = 1") == "Probe"
            assert await app.fetchval("SELECT position FROM store_head") == 1
        finally:
            await transaction.rollback()
        assert await app.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await app.close()


# What is served comes from the items table and the head: the app role may not write either
# except through the functions that derive them from the log (issue 9: `UPDATE items` changed
# what was served while /audit/verify said ok).
PROJECTION_WRITES = (
    'UPDATE items SET value = \'{"region": "evil", "subaccount_id": "sa-1"}\'',
    "INSERT INTO items (kind, name, version, live, value, position, updated_at) "
    "VALUES ('subaccount', 'evil', 1, true, '{}', 1, now())",
    "DELETE FROM items",
    "TRUNCATE items",
    "UPDATE store_head SET position = position + 1",
    "UPDATE store_head SET fence_epoch = 2147483647",
    "UPDATE store_head SET base_position = 0",
    "INSERT INTO store_head (id, position, chain) VALUES (2, 0, '')",
    "DELETE FROM store_head",
)


@pytest.mark.parametrize("statement", PROJECTION_WRITES)
async def test_the_app_role_cannot_write_the_served_state_or_the_head(
    db_url: str, app_role: str, statement: Any
) -> None:
    await seed(db_url)
    owner = await asyncpg.connect(db_url)
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        served = "SELECT kind, name, version, live, value, position FROM items ORDER BY 1, 2"
        before = (await owner.fetch(served), await owner.fetch("SELECT * FROM store_head"))
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await app.execute(statement)
        after = (await owner.fetch(served), await owner.fetch("SELECT * FROM store_head"))
        assert after == before and len(before[0]) == 3
    finally:
        await app.close()
        await owner.close()


async def test_a_role_without_the_grants_cannot_call_the_writing_functions(db_url: str) -> None:
    async with login_role(db_url, granted=False) as role:
        other = await asyncpg.connect(as_role(db_url, role))
        try:
            for call in (
                APPEND_ONE,
                "SELECT shadowline_fence(2)",
                "SELECT shadowline_quarantine_after(0, 2)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await other.execute(call)
        finally:
            await other.close()


async def test_the_app_role_cannot_switch_the_append_only_trigger_off(
    db_url: str, app_role: str
) -> None:
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="owner"):
            await app.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
    finally:
        await app.close()


async def test_an_instance_runs_as_the_least_privilege_role(db_url: str, app_role: str) -> None:
    async with started(as_role(db_url, app_role)) as inst:
        service = inst.service
        await service.put("subaccount", "acme", sub("eu10"), None, META)
        await service.put("subaccount", "acme", sub("eu20"), 1, META)
        await service.put("subaccount", "beta", sub("us10"), None, META)
        deleted = await service.delete("subaccount", "beta", None, META)
        assert deleted.position is not None
        await inst.snapshotter.take(deleted.position)
        local = await service.put(
            "snc",
            "default",
            {"library_path": "/usr/lib/libsapcrypto.so", "my_name": "p:CN=a"},
            None,
            META,
        )
        assert await service.get("subaccount", "acme") == (sub("eu20"), 2)
        assert local.version == 1
        events = await inst.store.read(0, 100)
        snapshot = await inst.store.latest_snapshot()

    assert [e.position for e in events] == [1, 2, 3, 4]
    assert verify_chain(GENESIS, events) is None
    assert snapshot is not None
    assert (snapshot.position, snapshot.state) == (4, {"subaccount/acme": sub("eu20")})


# -- tamper evidence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        (
            'UPDATE events SET data = \'{"region": "evil", "subaccount_id": "sa-1"}\' WHERE position = 2',
            2,
        ),
        ('UPDATE events SET metadata = metadata || \'{"actor": "mallory"}\' WHERE position = 2', 2),
        ("UPDATE events SET recorded_at = recorded_at - interval '1 hour' WHERE position = 2", 2),
        ("DELETE FROM events WHERE position = 2", 3),
    ],
    ids=["data", "actor", "recorded_at", "deleted"],
)
async def test_the_hash_chain_reports_the_position_an_owner_tampered_with(
    db_url: str, tamper: str, broken_at: int
) -> None:
    async with started(db_url) as inst:
        for i in range(4):
            await inst.service.put("subaccount", f"acme-{i}", sub(f"r{i}"), None, META)
        assert verify_chain(GENESIS, await inst.store.read(0, 100)) is None

        owner = await asyncpg.connect(db_url)
        try:
            # One transaction: nobody else ever sees the trigger switched off.
            async with owner.transaction():
                await owner.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
                await owner.execute(tamper)
                await owner.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute("UPDATE events SET epoch = 9 WHERE position = 1")
        finally:
            await owner.close()

        broken = verify_chain(GENESIS, await inst.store.read(0, 100))

    assert broken is not None
    assert broken.position == broken_at
    assert broken.expected != broken.found
