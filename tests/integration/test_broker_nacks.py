"""A channel the broker nacked a replicated event on is replaced (adapters.publish_channel).

The broker is made to nack with a queue that refuses every message (x-max-length 0,
reject-publish) bound to the events exchange beside the shadow's replication queue: RabbitMQ
confirms a message only once every queue it was routed to took it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest

from shadowline.adapters.broker import BrokerLink, Names
from tests.conftest import AMQP_URL, delete_cluster_topology
from tests.integration.chained import event


@pytest.fixture
async def link(rabbitmq: None) -> AsyncIterator[BrokerLink]:
    names = Names(f"t{uuid.uuid4().hex[:10]}")
    link = BrokerLink(AMQP_URL, names, "test nacks")
    await link.start()
    await link.replication_queue("shadow")
    try:
        yield link
    finally:
        await link.close()
        await delete_cluster_topology(names.cluster, ["shadow"])


async def test_a_nacked_publish_fails_and_the_next_one_goes_out_on_a_new_channel(
    link: BrokerLink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "shadowline.adapters.broker")
    refusing = f"{link.names.events}.refusing"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            refusing, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await queue.bind(link.names.events, "#")
        first = link._publish  # the link's own channel: what the replacement is about
        with pytest.raises(aiormq.exceptions.DeliveryError):
            await link.publish_event(event(1, 1, bytes(32)), confirm_within=5)
        renewed = link._publish
        assert renewed is not first and renewed is not None and not renewed.is_closed
        assert caplog.text.count("publishing on a new channel") == 1
        # Nacked again on the new channel: replaced again, once for all its nacks.
        for position in (2, 3):
            with pytest.raises(aiormq.exceptions.DeliveryError):
                await link.publish_event(event(position, 1, bytes(32)), confirm_within=5)
        assert caplog.text.count("publishing on a new channel") == 3
        await queue.delete(if_unused=False, if_empty=False)
    await link.publish_event(event(4, 1, bytes(32)), confirm_within=5)  # confirmed
    await link.publish_monitoring("heartbeat.x", {})  # the exchanges moved with the channel
    assert caplog.text.count("publishing on a new channel") == 3
