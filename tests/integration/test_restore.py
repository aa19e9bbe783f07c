"""`restore` against real databases: a refused archive or target leaves the store exactly as it
was (one transaction), the least-privilege role can restore, and a running, non-standalone or
non-empty target is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import orjson
import pytest
from sqlalchemy import func, select

from shadowline.adapters.archive import lines
from shadowline.adapters.db import create_engine
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.restore_store import RestoreTarget, restored_as
from shadowline.adapters.tables import events as events_table
from shadowline.application.restore import Restored, restore
from shadowline.domain.backup import Reader, line
from shadowline.domain.errors import BackupRefused
from shadowline.domain.validation import Catalog
from tests.archives import SECRET, archive_lines, resealed, signed_log, write_archive
from tests.conftest import http_client, started
from tests.integration.chained import as_role, login_role

pytestmark = pytest.mark.integration

CATALOG = Catalog(load_config_schemas())
ORIGIN = "prod"


async def restore_file(url: str, path: Path, cluster: str = "prod-2") -> Restored:
    engine = create_engine(url, pool_size=1)
    try:
        return await restore(
            Reader(lines(path), SECRET),
            RestoreTarget(engine),
            secret=SECRET,
            cluster=cluster,
            instance="restored",
            catalog=CATALOG,
            archive={"file": path.name},
            metadata={"actor": "ops-ada"},
            page=5,
        )
    finally:
        await engine.dispose()


async def count_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def archive(tmp_path: Path, data: Sequence[bytes], name: str = "a.slbackup") -> Path:
    return write_archive(tmp_path / name, data)


async def test_a_restored_store_serves_the_log_and_its_fold_and_records_the_restore(
    db_url: str, tmp_path: Path
) -> None:
    log = signed_log(ORIGIN, 23, epochs=[1] * 10 + [2] * 8 + [4] * 5)
    done = await restore_file(db_url, archive(tmp_path, archive_lines(log, ORIGIN)))
    assert (done.events, done.items, done.record.position) == (23, 3, 24)
    async with started(db_url, cluster="prod-2", cluster_secret=SECRET) as inst:
        head = await inst.store.head()
        assert (head.position, head.epoch, head.chain) == (24, 4, done.record.chain)
        assert (await restored_as(inst.engine) or {})["origin"]["cluster"] == ORIGIN
        async with http_client(inst) as http:
            verdict = (await http.get("/audit/verify")).json()
            assert verdict["ok"] and verdict["checked"] == 24, verdict
            events = [
                orjson.loads(x)
                for x in (await http.get("/events", params={"after": 22})).text.splitlines()
            ]
            assert events[0]["chain"] == log[-1].chain.hex()  # the origin's chain, as it was
            put = await http.put("/config/system-mapping/new", json=log[0].data)
            assert put.status_code == 201 and put.json()["epoch"] == 4  # on in the head's term


async def test_a_refused_archive_changes_nothing_even_when_refused_at_its_end(
    db_url: str, tmp_path: Path
) -> None:
    log = signed_log(ORIGIN, 30)
    good = archive_lines(log, ORIGIN)
    wrong_state = archive_lines(log, ORIGIN, items={})  # refused only after every event
    tampered = [*good]
    doc = orjson.loads(tampered[20])
    tampered[20] = line({**doc, "data": {**doc["data"], "internal_port": 1}})
    for name, data in {
        "state": wrong_state,
        "tampered": resealed(tampered),
        "truncated": good[:-1],
        "mac": [*good[:-1], resealed(good, "another-secret")[-1]],
    }.items():
        with pytest.raises(BackupRefused):
            await restore_file(db_url, archive(tmp_path, data, f"{name}.slbackup"))
        assert await count_events(db_url) == 0, name
    await restore_file(db_url, archive(tmp_path, good))  # the store is still a fit target
    assert await count_events(db_url) == 31


async def test_the_least_privilege_role_can_restore(db_url: str, tmp_path: Path) -> None:
    async with login_role(db_url) as role:
        done = await restore_file(
            as_role(db_url, role), archive(tmp_path, archive_lines(signed_log(ORIGIN, 8), ORIGIN))
        )
    assert done.record.position == 9


async def test_a_store_that_is_not_empty_is_refused(db_url: str, tmp_path: Path) -> None:
    path = archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN))
    await restore_file(db_url, path)
    with pytest.raises(BackupRefused, match="not empty"):
        await restore_file(db_url, path, cluster="prod-3")
    assert await count_events(db_url) == 5


@pytest.mark.parametrize("role", ["shadow", "master", "fenced"])
async def test_a_shadow_or_a_master_is_refused(db_url: str, tmp_path: Path, role: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE instance_state SET role = $1", role)
    finally:
        await conn.close()
    path = archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN))
    with pytest.raises(BackupRefused, match=f"is a {role}"):
        await restore_file(db_url, path)
    assert await count_events(db_url) == 0


async def test_a_standalone_that_knows_a_peer_is_refused(db_url: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE ha_state SET master_url = 'http://node-a:8080'")
    finally:
        await conn.close()
    path = archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN))
    with pytest.raises(BackupRefused, match="HA set up"):
        await restore_file(db_url, path)


async def test_a_running_instance_is_refused(db_url: str, tmp_path: Path) -> None:
    path = archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN))
    async with started(db_url):
        with pytest.raises(BackupRefused, match="stop the instance first"):
            await restore_file(db_url, path)
    assert await count_events(db_url) == 0


async def test_the_origins_cluster_name_is_refused_before_anything_is_read(
    db_url: str, tmp_path: Path
) -> None:
    path = archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN))
    with pytest.raises(BackupRefused, match="second master"):
        await restore_file(db_url, path, cluster=ORIGIN)


async def test_an_instance_on_a_restored_store_refuses_the_origins_cluster_name(
    db_url: str, tmp_path: Path
) -> None:
    await restore_file(db_url, archive(tmp_path, archive_lines(signed_log(ORIGIN, 4), ORIGIN)))
    with pytest.raises(BackupRefused, match="SHADOWLINE_CLUSTER=prod-2"):
        async with started(db_url, cluster=ORIGIN, cluster_secret=SECRET):
            pass
    engine = create_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as c:
            assert await c.scalar(select(func.count()).select_from(events_table)) == 5
    finally:
        await engine.dispose()


async def test_an_instance_starting_while_a_restore_runs_waits_for_its_outcome(db_url: str) -> None:
    """Else it would see no BackupRestored yet, pass the check under the origin's cluster name,
    and then run on the restored log as a second master of the origin's cluster."""
    engine = create_engine(db_url, pool_size=2)
    try:
        async with RestoreTarget(engine).session():  # a restore's transaction, under way
            check = asyncio.create_task(restored_as(engine))
            await asyncio.sleep(0.5)
            assert not check.done()  # held by the restore's lock
        assert await asyncio.wait_for(check, 10) is None  # nothing restored: nothing bound
    finally:
        await engine.dispose()
