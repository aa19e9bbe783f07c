"""A master's own heartbeats are routed to no queue of its own (entrypoints.amqp.heartbeats):
RabbitMQ confirms a heartbeat, the master's lease, only once every queue it was routed to has
it, so one of the master's own queues left on a frozen broker node would stall its lease until
the cluster noticed the node gone. Checked on the real broker with `mandatory`: a heartbeat
under the master's name, published while its heartbeat listener and its screen's feed listen,
comes back unroutable; the same message under another name, or a role change, is routed."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import orjson
import pytest
from aio_pika.exceptions import DeliveryError

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.application.liveness import Liveness
from shadowline.bootstrap import Instance
from shadowline.domain.roles import FenceReason
from tests.conftest import AMQP_URL, delete_cluster_topology, http_client

pytestmark = pytest.mark.integration


async def _routed(cluster: str, routing_key: str) -> bool:
    """Whether a mandatory message on the cluster's monitoring exchange reached any queue."""
    async with await aio_pika.connect(AMQP_URL, timeout=10) as connection:
        channel = await connection.channel(on_return_raises=True)
        exchange = await channel.get_exchange(Names(cluster).monitoring)
        body = orjson.dumps({"at": time.time()})
        try:
            await exchange.publish(aio_pika.Message(body), routing_key, mandatory=True)
        except DeliveryError:
            return False
        return True


async def test_the_masters_own_heartbeats_reach_no_queue_of_its_own(
    instance: Instance, rabbitmq: None
) -> None:
    cluster, me = instance.settings.cluster, instance.settings.instance
    try:
        async with http_client(instance, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
        deadline = time.monotonic() + 30
        while not (instance.feed.connected and instance.ha.whoami().master):
            assert time.monotonic() < deadline, "the feed never listened"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the heartbeat listener declared its queue by now
        assert await _routed(cluster, "role.changed")  # the feed hears role changes
        assert not await _routed(cluster, f"heartbeat.{me}")
        assert not await _routed(cluster, "heartbeat.nobody-named-this")
    finally:
        await delete_cluster_topology(cluster, [])


async def test_a_fenced_master_hears_a_newer_master_its_record_does_not_name(
    instance: Instance, rabbitmq: None
) -> None:
    """A fenced master lifts its fence once it heard no newer master for a takeover delay, so
    it must hear every instance's heartbeats, not only those its HA record names: here a
    `node-c`, master in epoch 7 (its shadow was removed, or promoted and failed over again)."""
    cluster = instance.settings.cluster
    secret = instance.settings.cluster_secret
    assert secret is not None
    other = instance.settings.model_copy(update={"instance": "node-c"})
    link = BrokerLink(
        AMQP_URL, Names(cluster), "test node-c", declare=("monitoring",),
        secret=secret.get_secret_value(),
    )  # fmt: skip
    describe = {"instance": "node-c", "role": "master", "epoch": 7}
    try:
        async with http_client(instance, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
        assert instance.ha.whoami().master
        instance.failover.fence(FenceReason.LEASE_LOST, "a test took its lease")
        await link.start()
        beats = Liveness(other, link, lambda: dict(describe))
        liveness = instance.failover._liveness  # what the lease watch reads
        assert liveness is not None
        deadline = time.monotonic() + 10
        while liveness.newest_epoch_heard(5.0)[0] != 7:
            assert time.monotonic() < deadline, "node-c was never heard"
            assert await beats.beat_once()
            await asyncio.sleep(0.2)
    finally:
        await link.close()
        await delete_cluster_topology(cluster, [])
