"""Config commands across a failover, with real processes: a command published while the master
is dead waits in the queue and is answered by the promoted shadow; a command the old master
applied, published again, is answered from the new master's (replicated) log, not applied
twice.
"""

from __future__ import annotations

import signal
from typing import Any

import orjson

from shadowline.client import BrokerClient, command
from tests.conftest import AMQP_URL
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import HaCluster, admin, wait_role

ha_cluster = failover_fixtures.ha_cluster

SUBACCOUNT = {"region": "eu10", "subaccount_id": "a1"}


def _by_command(process: Process, command_id: str) -> list[dict[str, Any]]:
    with admin(process) as client:
        lines = client.get("/events", params={"actor": "amqp:guest"}).text.splitlines()
    return [e for e in map(orjson.loads, lines) if e["metadata"]["command_id"] == command_id]


def test_a_command_published_while_the_master_is_dead_is_answered_by_the_promoted_shadow(
    ha_cluster: HaCluster,
) -> None:
    master, shadow = ha_cluster.master, ha_cluster.shadow
    for process in (master, shadow):  # the test publishes as guest: opted in, never implicit
        process.env["SHADOWLINE_COMMAND_PUBLISHERS"] = "guest"
    ha_cluster.set_up()
    with BrokerClient(AMQP_URL, ha_cluster.cluster, timeout=60) as client:
        before = command("subaccount", "before", SUBACCOUNT)
        first = client.publish_config_change("put", before)
        assert first["ok"] is True, first
        assert (first["ok"], first["epoch"]) == (True, 1), first
        master.signal(signal.SIGKILL)
        during = client.put("subaccount", "during", SUBACCOUNT, reply_within=60)
        wait_role(shadow, "master", 2, timeout=5)
        again = client.publish_config_change("put", before)
    assert during["epoch"] == 2
    assert again == {**first, "duplicate": True}
    assert len(_by_command(shadow, before["command_id"])) == 1
    assert len(_by_command(shadow, during["command_id"])) == 1
    master.wait()
