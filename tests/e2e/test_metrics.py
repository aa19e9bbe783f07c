"""GET /metrics of real processes: a master, its shadow and a watchdog (heartbeat 0.5 s,
takeover delay 2 s), scraped with Basic auth (instances) and without (the watchdog), parsed with
prometheus_client's parser, checked against what the processes say elsewhere (/health), through
writes, a forged promote command and a failover (the master killed with SIGKILL). Every metric
the shipped dashboard and alert rules query must be in these live scrapes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadowline.adapters.broker import Names
from shadowline.domain import signing
from tests.conftest import ADMIN_PASSWORD, AMQP_URL
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process, free_port
from tests.e2e.failover_fixtures import (
    HaCluster,
    admin,
    health_of,
    mapping,
    wait_for,
    wait_role,
)
from tests.e2e.test_commands import _command
from tests.unit.test_dashboards import Exposed, drift

pytestmark = pytest.mark.e2e

ha_cluster = failover_fixtures.ha_cluster

SANE_AGE = 10.0  # seconds: heartbeats every 0.5 s; a master fences itself after 1.2 s


@dataclass(frozen=True)
class Scrape:
    text: str

    def value(self, metric: str, /, **labels: str) -> float:
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == metric and sample.labels == labels:
                    return float(sample.value)
        raise AssertionError(f"{metric}{labels} is not in the scrape")


def scrape(url: str, auth: tuple[str, str] | None = None) -> Scrape:
    response = httpx.get(f"{url}/metrics", auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


def instance(process: Process) -> Scrape:
    return scrape(process.url, ("admin", ADMIN_PASSWORD))


def until(
    process_scrape: Callable[[], Scrape],
    predicate: Callable[[Scrape], bool],
    what: str,
    timeout: float = 30,
) -> Scrape:
    """Scrape until `predicate(scrape)` holds; returns that scrape."""

    def attempt() -> Scrape | None:
        found = process_scrape()
        return found if predicate(found) else None

    return wait_for(attempt, timeout, what, every=0.2)


async def _publish_command(cluster: str, routing_key: str, command: dict[str, Any]) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(Names(cluster).commands, ensure=False)
        message = aio_pika.Message(orjson.dumps(command), expiration=60)
        await exchange.publish(message, routing_key, mandatory=True)


def _forged_promote(shadow: str, cluster: str) -> dict[str, Any]:
    forged = _command(shadow, cluster, issued_by="test-metrics", reason="a forged command")
    return signing.sign("not-the-cluster-secret", forged)


def test_metrics_of_master_shadow_and_watchdog_follow_writes_a_forged_command_and_a_failover(
    ha_cluster: HaCluster,
) -> None:
    watchdog_url = f"http://127.0.0.1:{free_port()}"
    ha_cluster.watchdog.env["SHADOWLINE_WATCHDOG_HTTP_BIND"] = watchdog_url.removeprefix("http://")
    ha_cluster.set_up()
    master, shadow = ha_cluster.master, ha_cluster.shadow
    with admin(master) as client:
        for n in range(20):
            response = client.put(f"/config/system-mapping/m{n}", json=mapping(f"m{n}", n))
            assert response.status_code in (200, 201), response.text
    position = health_of(master)["position"]

    # The master: positions as /health says, the relay caught up, sync with a connected shadow.
    on_master = until(
        lambda: instance(master),
        lambda s: s.value("shadowline_published_position") == position,
        "the master's relay to publish every event",
    )
    assert on_master.value("shadowline_committed_position") == position
    assert on_master.value("shadowline_applied_position") == position
    assert on_master.value("shadowline_epoch") == 1
    assert on_master.value("shadowline_role", role="master") == 1
    assert on_master.value("shadowline_role", role="shadow") == 0
    assert on_master.value("shadowline_replication_mode", mode="sync") == 1
    assert on_master.value("shadowline_shadow_state", state="connected") == 1
    assert on_master.value("shadowline_append_batch_size_sum") >= 20
    assert on_master.value("shadowline_append_batch_seconds_count") >= 1
    assert 0 <= on_master.value("shadowline_heartbeat_confirmed_age_seconds") < SANE_AGE
    assert 0 <= on_master.value("shadowline_peer_heartbeat_age_seconds") < SANE_AGE
    assert (
        on_master.value("shadowline_instance_info", name="node-a", version=health_version(master))
        == 1
    )

    # The shadow: it applied all of it, and publishes nothing of its own.
    on_shadow = until(
        lambda: instance(shadow),
        lambda s: s.value("shadowline_applied_position") == position,
        "the shadow to apply the master's position",
    )
    assert on_shadow.value("shadowline_role", role="shadow") == 1
    assert on_shadow.value("shadowline_replicated_events_total") >= 20
    assert on_shadow.value("shadowline_replication_lag_seconds_count") >= 20
    assert math.isnan(on_shadow.value("shadowline_published_position"))
    assert 0 <= on_shadow.value("shadowline_peer_heartbeat_age_seconds") < SANE_AGE
    assert 0 <= on_shadow.value("shadowline_heartbeat_confirmed_age_seconds") < SANE_AGE

    # The watchdog: /health, and the cluster as it hears it.
    doc = httpx.get(f"{watchdog_url}/health", timeout=5).json()
    assert doc["ok"] and doc["clusters"][ha_cluster.cluster]["master"] == "node-a", doc
    cluster = ha_cluster.cluster
    before = until(
        lambda: scrape(watchdog_url),
        lambda s: s.value("shadowline_watchdog_instances", cluster=cluster, role="shadow") == 1,
        "the watchdog to hear the shadow",
    )
    assert before.value("shadowline_watchdog_instances", cluster=cluster, role="master") == 1
    assert before.value("shadowline_watchdog_state", cluster=cluster, state="watching") == 1
    assert before.value("shadowline_watchdog_epoch", cluster=cluster) == 1
    assert before.value("shadowline_watchdog_broker_connected", cluster=cluster) == 1
    age = before.value("shadowline_watchdog_master_heartbeat_age_seconds", cluster=cluster)
    assert 0 <= age < SANE_AGE

    exposed = Exposed().add(on_master.text).add(on_shadow.text).add(before.text)
    assert drift(exposed) == []

    # A forged promote command: refused and counted by reason.
    asyncio.run(_publish_command(cluster, "promote.node-b", _forged_promote("node-b", cluster)))
    until(
        lambda: instance(shadow),
        lambda s: s.value("shadowline_rejected_commands_total", reason="signature") == 1,
        "the shadow to count the forged command",
        timeout=15,
    )

    # A failover: the master is killed, the watchdog probes it and promotes the shadow.
    assert master.popen is not None
    master.popen.kill()
    master.popen.wait()
    wait_role(shadow, "master", 2, timeout=30)
    promoted = until(
        lambda: instance(shadow),
        lambda s: s.value("shadowline_epoch") == 2,
        "the new master's metrics to show epoch 2",
    )
    assert promoted.value("shadowline_promotions_total", trigger="failover") == 1
    assert promoted.value("shadowline_promotions_total", trigger="switch-roles") == 0
    assert promoted.value("shadowline_role", role="master") == 1
    assert promoted.value("shadowline_committed_position") == health_of(shadow)["position"]
    after = until(
        lambda: scrape(watchdog_url),
        lambda s: s.value("shadowline_watchdog_failovers_total", cluster=cluster) == 1,
        "the watchdog to see the failover complete",
    )
    assert after.value("shadowline_watchdog_promotions_total", cluster=cluster) == 1
    assert after.value("shadowline_watchdog_probes_total", cluster=cluster, result="failed") >= 1
    assert after.value("shadowline_watchdog_commands_total", cluster=cluster, result="sent") >= 1
    assert after.value("shadowline_watchdog_epoch", cluster=cluster) == 2
    assert after.value("shadowline_watchdog_state", cluster=cluster, state="watching") == 1


def health_version(process: Process) -> str:
    with admin(process) as client:
        return str(client.get("/ha").json()["version"])
