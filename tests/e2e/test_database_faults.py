"""An instance's own PostgreSQL server killed (kill -9 of the postmaster and every backend)
under a write load, then started again (crash recovery): each instance of the pair has a
private server of its own (shadowline.harness.postgres), as DESIGN.md's "one database server
per instance" asks, so a fault of one takes nothing else down.

- The master's database: the master stops acknowledging (503) and stops claiming the role
  (no heartbeat without a usable database: its lease runs out, it fences itself, and the
  watchdog promotes the shadow after the takeover delay). Every write acknowledged before is
  on the new master. When its database is back the old master rejoins as shadow (quarantining
  what it wrote after the fork) and catches up.
- The shadow's database: the master degrades to async after the sync timeout, alerts, and
  keeps acknowledging writes; nobody is promoted; when the shadow's database is back the
  shadow catches up, the master returns to sync, and nothing acknowledged is lost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowline import harness
from shadowline.harness.postgres import PostgresServer, postgres_problem, private_postgres
from tests.conftest import ADMIN_PASSWORD, require_service
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import (
    HaCluster,
    WriteLoad,
    admin,
    assert_every_ack_is_on,
    assert_single_promotion,
    health,
    promotions,
    verify_agrees,
    wait_for,
    wait_role,
)
from tests.e2e.write_load import Answer


@dataclass
class OwnDatabases:
    """A master (node-a), its shadow (node-b) and a watchdog, each instance on its own server."""

    ha: HaCluster
    master_db: PostgresServer
    shadow_db: PostgresServer


@pytest.fixture
async def own_dbs(rabbitmq: None, tmp_path: Path) -> AsyncIterator[OwnDatabases]:
    require_service(postgres_problem())
    with private_postgres() as master_db, private_postgres() as shadow_db:
        servers = iter((master_db, shadow_db))  # the cluster asks for node-a's first

        async def make() -> str:
            return next(servers).create_database()

        # The servers outlive the instances: they are stopped after the cluster is.
        async for ha in failover_fixtures._ha_cluster(make, tmp_path, proxy=False):
            yield OwnDatabases(ha, master_db, shadow_db)


def _alerts(process: Process) -> dict[str, list[str]]:
    """The states of each alert the instance lists, by name."""
    with admin(process) as client:
        found = client.get("/alerts").json()["alerts"]
    states: dict[str, list[str]] = {}
    for alert in found:
        states.setdefault(alert["name"], []).append(alert["state"])
    return states


def _ha(process: Process) -> dict[str, Any]:
    doc = harness.cluster.ha(process, ADMIN_PASSWORD)
    assert doc is not None, f"{process.name} does not answer GET /ha"
    return doc


def _replication(process: Process) -> str | None:
    doc = harness.cluster.ha(process, ADMIN_PASSWORD)
    return None if doc is None else doc.get("replication")


def _sent_to(process: Process, answers: list[Answer], start: float, end: float) -> list[Answer]:
    return [a for a in answers if a.url == process.url and start <= a.sent <= end]


def test_the_masters_database_killed_fences_it_the_shadow_takes_over_and_it_rejoins_when_back(
    own_dbs: OwnDatabases,
) -> None:
    cluster = own_dbs.ha
    old, new = cluster.master, cluster.shadow
    cluster.set_up()
    load = WriteLoad([old.url, new.url]).start()
    try:
        load.wait_acks(100, timeout=20)
        own_dbs.master_db.kill()
        killed = time.monotonic()
        wait_for(lambda: (health(old) or {}).get("role") == "fenced", 10, "node-a to fence")
        fenced = time.monotonic()
        promoted = wait_role(new, "master", 2, timeout=15)
        print(
            f"\nkill -9 of node-a's PostgreSQL -> node-a fenced in {fenced - killed:.2f}s, "
            f"node-b promoted in {promoted - killed:.2f}s"
        )
        load.wait_acks(30, timeout=10, since=promoted)  # the new master takes the writes
        own_dbs.master_db.start()
        back = time.monotonic()
        rejoined = wait_role(old, "shadow", 2, timeout=20)
        print(f"node-a's PostgreSQL restarted -> node-a shadow in {rejoined - back:.2f}s")
        cluster.wait_sync(new)
        load.wait_acks(30, timeout=10, since=rejoined)
    finally:
        load.stop()
    # Nothing the old master answered after its database died was a 200 but for writes the
    # shadow already held (every acknowledgement is checked on the new master below), and
    # every refusal was a clear 503.
    refused = _sent_to(old, load.answers, killed, promoted)
    assert refused, "no write reached node-a while its database was down"
    assert {a.status for a in refused} == {503}, refused[:5]
    print(f"writes node-a refused while its database was down: {len(refused)}, all 503")
    assert_every_ack_is_on(new, load.acks)
    promotion = assert_single_promotion(new)
    assert not promotions(old)[1:], "the old master recorded a promotion of its own"
    with admin(old) as client:
        quarantine = client.get("/ha/quarantine").json()
    fork = promotion["data"]["fork_position"]
    print(f"fork position {fork}; quarantined on node-a: {quarantine['count']}")
    assert all(e["position"] > fork and e["epoch"] == 1 for e in quarantine["events"])
    acked = {(a.position, a.epoch) for a in load.acks}
    assert not [e for e in quarantine["events"] if (e["position"], 1) in acked]
    assert verify_agrees(old)["agree"]
    assert _alerts(old).get("database-unusable") == ["resolved"]


def test_the_shadows_database_killed_degrades_the_master_to_async_and_the_shadow_catches_up(
    own_dbs: OwnDatabases,
) -> None:
    cluster = own_dbs.ha
    master, shadow = cluster.master, cluster.shadow
    cluster.set_up()
    watchdog_log = cluster.watchdog.size()
    load = WriteLoad([master.url, shadow.url]).start()
    try:
        load.wait_acks(100, timeout=20)
        own_dbs.shadow_db.kill()
        killed = time.monotonic()
        wait_for(lambda: _replication(master) == "async", 10, "node-a to degrade to async")
        degraded = time.monotonic()
        print(f"\nkill -9 of node-b's PostgreSQL -> node-a async in {degraded - killed:.2f}s")
        load.wait_acks(100, timeout=15, since=degraded)  # the master keeps acknowledging
        assert _alerts(master).get("sync-degraded") == ["active"]
        own_dbs.shadow_db.start()
        back = time.monotonic()
        cluster.wait_sync(master)
        print(
            f"node-b's PostgreSQL restarted -> replication sync in {time.monotonic() - back:.2f}s"
        )
        load.wait_acks(50, timeout=10, since=time.monotonic())
    finally:
        load.stop()
    assert (health(master) or {}).get("role") == "master"
    assert (health(master) or {}).get("epoch") == 1
    assert not promotions(master), "someone was promoted"
    assert "promoting" not in cluster.watchdog.text(watchdog_log)
    assert not [a for a in load.acks if a.url != master.url], "an ack from elsewhere"
    assert_every_ack_is_on(master, load.acks)
    verify_agrees(shadow)
    assert_every_ack_is_on(shadow, load.acks)
    assert _alerts(master).get("sync-degraded") == ["resolved"]
    assert _alerts(shadow).get("database-unusable") == ["resolved"]
    assert _ha(master)["shadow"]["state"] in ("connected", "syncing")


def _read_only(server: PostgresServer, on: bool) -> None:
    """Every new transaction read-only (or not), and the sessions open now ended, as an
    operator (or a full disk's emergency measure) would do it."""
    change = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    server.sql(f"ALTER SYSTEM {change}")
    server.sql("SELECT pg_reload_conf()")
    if on:
        server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )


def test_the_masters_database_turned_read_only_is_failed_over_once_and_acks_nothing_more(
    own_dbs: OwnDatabases,
) -> None:
    cluster = own_dbs.ha
    old, new = cluster.master, cluster.shadow
    cluster.set_up()
    load = WriteLoad([old.url, new.url]).start()
    try:
        load.wait_acks(100, timeout=20)
        _read_only(own_dbs.master_db, True)
        turned = time.monotonic()
        promoted = wait_role(new, "master", 2, timeout=15)
        print(f"\nnode-a's database read-only -> node-b promoted in {promoted - turned:.2f}s")
        load.wait_acks(30, timeout=10, since=promoted)
        # Two more takeover delays: the old master, unable to quarantine on a read-only
        # database, stays fenced; nobody is promoted again.
        time.sleep(2 * failover_fixtures.TAKEOVER_DELAY)
        assert (health(old) or {}).get("role") == "fenced"
        assert _alerts(old).get("database-unusable") == ["active"]
        _read_only(own_dbs.master_db, False)
        wait_role(old, "shadow", 2, timeout=20)
        cluster.wait_sync(new)
    finally:
        load.stop()
    refused = _sent_to(old, load.answers, turned, promoted)
    assert refused and {a.status for a in refused} == {503}, refused[:5]
    assert_every_ack_is_on(new, load.acks)
    assert_single_promotion(new)
    assert not promotions(old)[1:]
    assert verify_agrees(old)["agree"]
