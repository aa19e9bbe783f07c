"""A message whose bytes no client library would write (a headers table with a key that is
not UTF-8, a routing key that is not UTF-8) costs that message only: before, aiormq closed the
whole connection on it (InvalidFrameError), and every channel with it. Against the shared
RabbitMQ, which hands such bytes on as the publisher wrote them."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters import amqp_frames, amqp_nodes
from tests.conftest import AMQP_URL
from tests.integration import raw_amqp

pytestmark = pytest.mark.integration


async def test_unreadable_properties_and_keys_arrive_marked_and_the_connection_stays(
    rabbitmq: None,
) -> None:
    exchange = f"forged-{uuid.uuid4().hex[:8]}"
    connection = await amqp_nodes.connect_robust(AMQP_URL, "forged frames test")
    closed: list[object] = []
    connection.close_callbacks.add(lambda *why: closed.append(why))
    try:
        channel = await connection.channel()
        target = await channel.declare_exchange(exchange, "topic", auto_delete=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(target, "#")
        seen: list[AbstractIncomingMessage] = []
        arrived = asyncio.Event()

        async def take(message: AbstractIncomingMessage) -> None:
            seen.append(message)
            await message.ack()
            if len(seen) == 4:
                arrived.set()

        await queue.consume(take)
        said = await raw_amqp.publish_raw(
            AMQP_URL,
            [
                (exchange.encode(), b"heartbeat.a", raw_amqp.BAD_KEY_TABLE, b"{}"),
                (exchange.encode(), b"heartbeat.b", raw_amqp.NESTED_BAD_KEY_TABLE, b"{}"),
                (exchange.encode(), raw_amqp.NOT_UTF8_KEY, None, b"{}"),
                (exchange.encode(), b"heartbeat.good", b"", b"{}"),
            ],
        )
        assert said == "200 done", "the broker took all four as written"
        await asyncio.wait_for(arrived.wait(), 10)
        assert [m.routing_key for m in seen] == [
            "heartbeat.a",
            "heartbeat.b",
            "heartbeat.\ufffd\ufffd",
            "heartbeat.good",
        ]
        assert all(amqp_frames.UNREADABLE in (m.headers or {}) for m in seen[:2])
        assert "utf-8" in str(seen[0].headers[amqp_frames.UNREADABLE])
        assert [m.body for m in seen] == [b"{}"] * 4 and not seen[3].headers
        assert closed == [] and not connection.is_closed
        # and the connection still carries what follows
        await target.publish(aio_pika.Message(b"after"), "heartbeat.after")
        await asyncio.sleep(0.2)
        assert closed == [] and not channel.is_closed
    finally:
        await connection.close()
