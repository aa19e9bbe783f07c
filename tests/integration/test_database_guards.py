"""The database itself keeps the log append-only: a trigger for everyone, grants for the app role.

And when someone with the power to switch the trigger off rewrites history anyway, the hash
chain names the position that was touched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shadowline.adapters.migrate import grant_app_role
from shadowline.domain.events import GENESIS, verify_chain
from tests.conftest import started

pytestmark = pytest.mark.integration

META = {"actor": "test", "request_id": "r-1"}
REFUSED_STATEMENTS = (
    "UPDATE {table} SET position = position",
    "DELETE FROM {table}",
    "TRUNCATE {table}",
)


def sub(region: str) -> dict[str, str]:
    return {"region": region, "subaccount_id": "sa-1"}


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
    role = f"sl_app_{uuid.uuid4().hex[:12]}"
    owner = await asyncpg.connect(db_url)
    try:
        await owner.execute(f"CREATE ROLE {quoted(role)} LOGIN")
    finally:
        await owner.close()
    try:
        await grant_app_role(db_url, role)
        yield role
    finally:
        owner = await asyncpg.connect(db_url)
        try:
            # DROP OWNED BY revokes every privilege the role holds in this database.
            await owner.execute(f"DROP OWNED BY {quoted(role)}")
            await owner.execute(f"DROP ROLE {quoted(role)}")
        finally:
            await owner.close()


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(False)


# -- the trigger -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["events", "snapshots"])
async def test_the_database_refuses_update_delete_and_truncate_even_for_the_owner(db_url, table):
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
    db_url, app_role, table
):
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        for statement in REFUSED_STATEMENTS:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await app.execute(statement.format(table=table))
    finally:
        await app.close()


async def test_the_app_role_may_insert_and_select_events(db_url, app_role):
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        transaction = app.transaction()
        await transaction.start()
        try:
            status = await app.execute(
                "INSERT INTO events (position, id, epoch, type, metadata, recorded_at, chain) "
                "VALUES (1, gen_random_uuid(), 1, 'Probe', '{}', now(), "
                "decode(repeat('00', 32), 'hex'))"
            )
            assert status == "INSERT 0 1"
            assert await app.fetchval("SELECT type FROM events WHERE position = 1") == "Probe"
        finally:
            await transaction.rollback()
        assert await app.fetchval("SELECT count(*) FROM events") == 0
    finally:
        await app.close()


async def test_the_app_role_cannot_switch_the_append_only_trigger_off(db_url, app_role):
    app = await asyncpg.connect(as_role(db_url, app_role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="owner"):
            await app.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
    finally:
        await app.close()


async def test_an_instance_runs_as_the_least_privilege_role(db_url, app_role):
    async with started(as_role(db_url, app_role)) as inst:
        service = inst.service
        await service.put("subaccount", "acme", sub("eu10"), None, META)
        await service.put("subaccount", "acme", sub("eu20"), 1, META)
        await service.put("subaccount", "beta", sub("us10"), None, META)
        deleted = await service.delete("subaccount", "beta", None, META)
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
    db_url, tamper, broken_at
):
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
