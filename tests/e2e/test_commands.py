"""Promote commands on the broker, as an attacker or a confused operator could send them: forged
(another secret), tampered (epoch changed after signing), stale (issued a minute ago), addressed
to another instance, and a valid command replayed. Every one is refused: the shadow stays shadow
(or its epoch does not move), and `alert.rejected-command` appears on the monitoring exchange
and in GET /metrics.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue

from shadowline.adapters.broker import Names
from shadowline.domain import signing
from tests.conftest import AMQP_URL
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import (
    TAKEOVER_DELAY,
    HaCluster,
    admin,
    health,
    is_role,
    mapping,
    name_of,
    promotions,
    wait_role,
)

ha_cluster = failover_fixtures.ha_cluster


def _command(shadow: str, cluster: str, **changes: Any) -> dict[str, Any]:
    """A promote command with the fields the watchdog puts in one (watchdog/service.py)."""
    return {
        "type": "promote",
        "cluster": cluster,
        "shadow": shadow,
        "epoch": 2,
        "previous_epoch": 1,
        "command_id": str(uuid.uuid4()),
        "issued_at": time.time(),
        "issued_by": "test-watchdog",
        "reason": "end-to-end test of command checks",
        **changes,
    }


class Broker:
    """An outsider on the cluster's exchanges: publishes commands, hears alerts."""

    def __init__(self, cluster: str, channel: AbstractChannel, alerts: AbstractQueue) -> None:
        self._names = Names(cluster)
        self._channel = channel
        self._alerts = alerts
        self.heard: list[dict[str, Any]] = []

    async def publish(self, routing_key: str, body: bytes) -> None:
        exchange = await self._channel.get_exchange(self._names.commands, ensure=False)
        message = aio_pika.Message(body, content_type="application/json", expiration=60)
        await exchange.publish(message, routing_key, mandatory=True)

    async def wait_alerts(
        self, count: int, within: float = 10, *, more: bool = False
    ) -> list[dict[str, Any]]:
        """Read alerts until `count` were heard (`more`: also whatever else comes within)."""
        deadline = time.monotonic() + within
        while (more or len(self.heard) < count) and time.monotonic() < deadline:
            message = await self._alerts.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            self.heard.append({"routing_key": message.routing_key, **orjson.loads(message.body)})
        assert len(self.heard) >= count, f"{len(self.heard)} alerts heard, {count} expected"
        return self.heard


@pytest.fixture
async def broker(ha_cluster: HaCluster) -> AsyncIterator[Broker]:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        names = Names(ha_cluster.cluster)
        # Declared here too (idempotent), so the alert queue can bind before the cluster runs.
        monitoring = await channel.declare_exchange(
            names.monitoring, aio_pika.ExchangeType.TOPIC, durable=True
        )
        alerts = await channel.declare_queue(exclusive=True, auto_delete=True)
        await alerts.bind(monitoring, "alert.*")
        yield Broker(ha_cluster.cluster, channel, alerts)
    finally:
        await connection.close()


def _rejected_alerts_metric(process: Process) -> float:
    with admin(process) as client:
        text = client.get("/metrics").text
    found = re.search(r'^shadowline_alerts_total\{name="rejected-command"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _rejections(heard: list[dict[str, Any]], instance: str) -> list[dict[str, Any]]:
    return [
        a
        for a in heard
        if a["routing_key"] == "alert.rejected-command" and a.get("instance") == instance
    ]


async def test_forged_tampered_stale_and_misaddressed_commands_are_refused_and_alerted(
    ha_cluster: HaCluster, broker: Broker
) -> None:
    ha_cluster.set_up(watchdog=False)
    shadow = ha_cluster.shadow
    name, secret = name_of(shadow), shadow.env["SHADOWLINE_CLUSTER_SECRET"]
    valid = signing.sign(secret, _command(name, ha_cluster.cluster))
    bad = {
        "forged": signing.sign("not-the-cluster-secret", _command(name, ha_cluster.cluster)),
        "tampered": {**valid, "epoch": 3},
        "stale": signing.sign(
            secret, _command(name, ha_cluster.cluster, issued_at=time.time() - 60)
        ),
        "for another instance": signing.sign(secret, _command("node-z", ha_cluster.cluster)),
        "for another cluster sharing the secret": signing.sign(secret, _command(name, "other")),
    }
    for command in bad.values():
        await broker.publish(f"promote.{name}", orjson.dumps(command))
    await broker.wait_alerts(1)
    await asyncio.sleep(1.0)  # a command obeyed late, or a repeat published, would show by now
    rejected = _rejections(await broker.wait_alerts(1, within=0.5, more=True), name)
    for alert in rejected:
        print(f"\n{alert['routing_key']}: {alert['message']}")
    # The alert is raised once while it is active: the first refusal is published, each one
    # after it is logged (with its command id) and counted.
    assert [(a["state"], a["details"]["command_id"]) for a in rejected] == [
        ("active", bad["forged"]["command_id"])
    ]
    logged = shadow.text()
    assert all(c["command_id"] in logged for c in bad.values()), logged[-2000:]
    assert is_role(shadow, "shadow", 1), health(shadow)
    assert is_role(ha_cluster.master, "master", 1), health(ha_cluster.master)
    assert not promotions(shadow)
    assert _rejected_alerts_metric(shadow) == len(bad)


async def test_a_replayed_promote_command_is_refused_and_the_epoch_stays(
    ha_cluster: HaCluster, broker: Broker
) -> None:
    ha_cluster.set_up(watchdog=False)
    master, shadow = ha_cluster.master, ha_cluster.shadow
    name, secret = name_of(shadow), shadow.env["SHADOWLINE_CLUSTER_SECRET"]
    captured = orjson.dumps(signing.sign(secret, _command(name, ha_cluster.cluster)))
    await broker.publish(f"promote.{name}", captured)
    await asyncio.to_thread(wait_role, shadow, "master", 2, 10)
    await broker.publish(f"promote.{name}", captured)  # the same bytes, within the window
    heard = await broker.wait_alerts(1)
    rejected = _rejections(heard, name)
    assert len(rejected) == 1, heard
    print(f"\nreplayed: {rejected[0]['message']}")
    assert rejected[0]["details"]["command_id"] == orjson.loads(captured)["command_id"]
    assert is_role(shadow, "master", 2), health(shadow)
    assert len(promotions(shadow)) == 1
    assert _rejected_alerts_metric(shadow) == 1
    # The old master was never cut off: it hears node-b's heartbeats in epoch 2 and must step
    # down (rejoin as its shadow), not stay a second writable master of epoch 1.
    await asyncio.sleep(2 * TAKEOVER_DELAY)
    with admin(master) as client:
        late = client.put("/config/system-mapping/late", json=mapping("late", 1))
    print(
        f"a write to the old master {2 * TAKEOVER_DELAY:.0f}s after: {late.status_code} {late.text}"
    )
    assert late.status_code == 503, "two writable masters: the old one did not step down"
    await asyncio.to_thread(wait_role, master, "shadow", 2, 10)
