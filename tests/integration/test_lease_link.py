"""The heartbeats' own connection (adapters.lease_link) against the real broker: what any
broker user may do to it must not cost the master its lease for longer than a heartbeat."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.lease_link import LeaseLink
from tests.conftest import AMQP_URL, delete_cluster_topology

pytestmark = pytest.mark.integration


@pytest.fixture
async def links(rabbitmq: None) -> AsyncIterator[tuple[BrokerLink, LeaseLink]]:
    names = Names(f"t{uuid.uuid4().hex[:10]}")
    main = BrokerLink(AMQP_URL, names, "test main", declare=("monitoring",))
    await main.start()
    lease = LeaseLink(main)
    await lease.start()
    try:
        yield main, lease
    finally:
        await lease.close()
        await main.close()
        await delete_cluster_topology(names.cluster, [])


async def test_a_nacked_heartbeat_is_no_confirm_but_the_node_that_nacked_it_is_kept(
    links: tuple[BrokerLink, LeaseLink],
) -> None:
    """Any user who may declare a server-named queue and bind it on monitoring (the read-only
    monitor user may) can make the broker nack the master's heartbeats. A nack does not say
    which queue refused, the watchdog's may be one (a policy's length limit), so it renews no
    lease; the node answered, so it is not left for another, where the same queue would nack."""
    main, lease = links
    async with await aio_pika.connect(AMQP_URL, timeout=10) as attacker:
        channel = await attacker.channel()
        refusing = await channel.declare_queue(
            "", exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await refusing.bind(main.names.monitoring, "heartbeat.master")
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await lease.publish_monitoring("heartbeat.master", {"n": 1}, ttl=3)
        assert await lease.answers(1.0)
        assert (lease.quiet() or 0.0) < 1.0  # the nack was heard: not silent
    await lease.publish_monitoring("heartbeat.master", {"n": 2}, ttl=3)  # the queue gone


async def test_the_exchange_deleted_under_the_heartbeats_is_declared_again(
    links: tuple[BrokerLink, LeaseLink],
) -> None:
    main, lease = links
    async with await aio_pika.connect(AMQP_URL, timeout=10) as attacker:
        channel = await attacker.channel()
        await channel.exchange_delete(main.names.monitoring)
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await lease.publish_monitoring("heartbeat.master", {"n": 1}, ttl=3)
    for _ in range(50):  # the robust channel comes back; the exchange is there again
        try:
            await lease.publish_monitoring("heartbeat.master", {"n": 2}, ttl=3)
            break
        except Exception:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("no heartbeat confirmed after the exchange was deleted")
