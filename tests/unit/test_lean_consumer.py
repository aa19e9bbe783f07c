"""The watchdog's lean AMQP consumer reads deliveries straight off the bytes (its frame loop is
the hot path of a watchdog of 1,000 clusters): what pamqp marshals, it must read back."""

from __future__ import annotations

from typing import Any

import aio_pika
from pamqp import body, commands, frame, header, heartbeat

from shadowline.adapters.amqp_consumer import _Protocol
from shadowline_bench.watchdog_sim import publish_frames


def delivery(exchange: str, key: str, headers: dict[str, Any], content: bytes) -> bytes:
    props = aio_pika.Message(b"", headers=headers, expiration=1.5).properties
    deliver = commands.Basic.Deliver("ctag", 7, False, exchange, key)
    frames = [
        frame.marshal(deliver, 1),
        frame.marshal(header.ContentHeader(0, len(content), props), 1),
    ]
    frames += [
        frame.marshal(body.ContentBody(content[i : i + 5]), 1) for i in range(0, len(content), 5)
    ]
    return b"".join(frames)


async def test_deliveries_split_anywhere_between_reads_are_read_whole_and_in_order() -> None:
    seen: list[tuple[str, str, dict[str, Any], bytes]] = []
    protocol = _Protocol(lambda *found: seen.append(found))
    stream = delivery(
        "shadowline.c.monitoring", "heartbeat.m", {"x-shadowline-mac": "ab"}, b"12345678901"
    )
    stream += frame.marshal(heartbeat.Heartbeat(), 0)
    stream += delivery("shadowline.d.monitoring", "failover.watchdog", {}, b"{}")
    for i in range(0, len(stream), 3):  # three bytes a read: every boundary is crossed
        protocol.data_received(stream[i : i + 3])
    assert seen == [
        ("shadowline.c.monitoring", "heartbeat.m", {"x-shadowline-mac": "ab"}, b"12345678901"),
        ("shadowline.d.monitoring", "failover.watchdog", {}, b"{}"),
    ]
    assert protocol.frames.empty()


async def test_a_method_other_than_a_delivery_goes_to_the_setup_queue() -> None:
    protocol = _Protocol(lambda *_: None)
    protocol.data_received(frame.marshal(commands.Queue.DeclareOk("amq.gen-x", 0, 0), 1))
    found = protocol.frames.get_nowait()
    assert isinstance(found, commands.Queue.DeclareOk) and found.queue == "amq.gen-x"


def test_the_benchs_raw_publish_frames_are_what_pamqp_reads() -> None:
    raw = publish_frames(b"shadowline.c.monitoring", b"heartbeat.m", b"ab" * 32, b"1500", b"{}")
    _, _, method = frame.unmarshal(raw)
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key) == ("shadowline.c.monitoring", "heartbeat.m")
