"""The watchdog's lean AMQP consumer reads deliveries straight off the bytes (its frame loop is
the hot path of a watchdog of 1,000 clusters): what pamqp marshals, it must read back."""

from __future__ import annotations

import asyncio
import ssl
import struct
from typing import Any

import aio_pika
import pytest
from pamqp import body, commands, frame, header, heartbeat

from shadowline.adapters import amqp_frames
from shadowline.adapters.amqp_consumer import LeanConsumer, tls_context
from shadowline.adapters.amqp_frame_loop import HEADERS_FLAG, FrameLoop
from shadowline.domain import trust
from shadowline.domain.watchdog_trust import ClusterKeys
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
    protocol = FrameLoop(lambda *found: seen.append(found))
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
    protocol = FrameLoop(lambda *_: None)
    protocol.data_received(frame.marshal(commands.Queue.DeclareOk("amq.gen-x", 0, 0), 1))
    found = protocol.frames.get_nowait()
    assert isinstance(found, commands.Queue.DeclareOk) and found.queue == "amq.gen-x"


def test_the_benchs_raw_publish_frames_are_what_pamqp_reads() -> None:
    raw = publish_frames(b"shadowline.c.monitoring", b"heartbeat.m", b"ab" * 32, b"1500", b"{}")
    _, _, method = frame.unmarshal(raw)
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key) == ("shadowline.c.monitoring", "heartbeat.m")


class _Transport:
    """Stands in for the socket: records that the consumer closed it."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        pass


def listening() -> tuple[FrameLoop, list[tuple[str, str, dict[str, Any], bytes]], _Transport]:
    seen: list[tuple[str, str, dict[str, Any], bytes]] = []
    protocol = FrameLoop(lambda *found: seen.append(found))
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, seen, transport


def raw_frame(kind: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, 1, len(payload)) + payload + bytes([end])


def header_with_table(table: bytes, size: int) -> bytes:
    """A content header whose headers table is `table` as it stands on the wire (a forger's)."""
    return struct.pack(">HHQH", 60, 0, size, HEADERS_FLAG) + struct.pack(">I", len(table)) + table


GOOD = delivery("shadowline.c.monitoring", "heartbeat.m", {"x-shadowline-mac": "ab"}, b"{}")


async def test_a_headers_table_pamqp_cannot_read_is_delivered_marked_and_the_stream_goes_on() -> (
    None
):
    protocol, seen, transport = listening()
    start = frame.marshal(commands.Basic.Deliver("ctag", 1, False, "e", "heartbeat.m"), 1)
    # A key that is not UTF-8, then a field of a type no AMQP table has.
    forged = start + raw_frame(2, header_with_table(b"\x02\xff\xfeS\x00\x00\x00\x01x", 2))
    forged += raw_frame(3, b"{}")
    forged += start + raw_frame(2, header_with_table(b"\x01k\x7f", 2)) + raw_frame(3, b"{}")
    protocol.data_received(forged + GOOD)
    assert [found[:2] for found in seen] == [("e", "heartbeat.m")] * 2 + [
        ("shadowline.c.monitoring", "heartbeat.m")
    ]
    assert all(set(found[2]) == {amqp_frames.UNREADABLE} for found in seen[:2])
    assert seen[2][2] == {"x-shadowline-mac": "ab"}, "the next, good delivery is read whole"
    assert protocol.dropped == 0 and not transport.closed


async def test_a_routing_key_that_is_not_utf8_is_read_with_u_fffd() -> None:
    protocol, seen, transport = listening()
    deliver = struct.pack(">HH", 60, 60) + b"\x04ctag" + struct.pack(">Q?", 1, False)
    deliver += b"\x17shadowline.c.monitoring" + b"\x02\xff\xfe"
    content = struct.pack(">HHQH", 60, 0, 2, 0)
    protocol.data_received(raw_frame(1, deliver) + raw_frame(2, content) + raw_frame(3, b"{}"))
    protocol.data_received(GOOD)
    assert [found[1] for found in seen] == ["\ufffd\ufffd", "heartbeat.m"]
    assert protocol.dropped == 0 and not transport.closed


async def test_a_handler_that_raises_drops_its_delivery_not_the_connection() -> None:
    calls: list[str] = []

    def handler(exchange: str, key: str, headers: dict[str, Any], content: bytes) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise ValueError("a bug in a handler")

    protocol = FrameLoop(handler)
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(GOOD + GOOD)
    assert calls == ["heartbeat.m", "heartbeat.m"]
    assert protocol.dropped == 1 and not transport.closed


async def test_a_body_past_the_largest_message_is_cut_one_byte_past_it_and_then_refused() -> None:
    protocol, seen, _ = listening()
    huge = b"x" * (trust.MAX_MESSAGE * 3)
    stream = frame.marshal(commands.Basic.Deliver("ctag", 1, False, "e", "heartbeat.m"), 1)
    stream += raw_frame(2, struct.pack(">HHQH", 60, 0, len(huge), 0))
    for at in range(0, len(huge), 60_000):
        stream += raw_frame(3, huge[at : at + 60_000])
    protocol.data_received(stream + GOOD)
    assert len(seen[0][3]) == trust.MAX_MESSAGE + 1
    keys = ClusterKeys("c", "a cluster secret of enough length")
    assert keys.heartbeat("heartbeat.m", seen[0][3], "ab", 0.0) == (
        None,
        f"larger than {trust.MAX_MESSAGE} bytes",
    )
    assert seen[1][3] == b"{}"


async def test_a_broken_stream_closes_the_connection_for_a_fresh_one() -> None:
    for broken in (
        raw_frame(8, b"", end=0x00),  # no frame end where one must be
        struct.pack(">BHI", 3, 1, 10**9),  # a frame larger than frame_max
        raw_frame(1, b"\x00\x0a\x00\x0b\xff"),  # a method frame pamqp cannot read
    ):
        protocol, seen, transport = listening()
        protocol.data_received(broken + GOOD)
        assert transport.closed and protocol.broken and seen == []
        protocol.connection_lost(None)
        assert isinstance(protocol.lost.result(), ConnectionError)


async def test_a_cancelled_consumer_reconnects() -> None:
    protocol, _, transport = listening()
    protocol.data_received(frame.marshal(commands.Basic.Cancel("ctag"), 1))
    assert transport.closed


async def test_an_unexpected_error_in_a_session_is_logged_and_the_consumer_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = LeanConsumer("amqp://guest:guest@127.0.0.1:1/", "t", [], lambda *_: None)
    sessions: list[str] = []
    again = asyncio.Event()

    async def session(url: str) -> None:
        sessions.append(url)
        if len(sessions) == 1:
            raise RuntimeError("a bug no one foresaw")
        again.set()
        await asyncio.Event().wait()

    consumer._session = session  # type: ignore[method-assign]
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(again.wait(), 5)
    finally:
        task.cancel()
    assert len(sessions) == 2, "a deaf watchdog would look alive: it must not die"
    assert "a bug no one foresaw" in caplog.text


def test_an_amqps_url_means_for_the_lean_consumer_what_it_means_for_aio_pika() -> None:
    assert tls_context("").verify_mode == ssl.CERT_REQUIRED
    lax = tls_context("no_verify_ssl=1")
    assert lax.verify_mode == ssl.CERT_NONE and not lax.check_hostname
    with pytest.raises(FileNotFoundError):  # the CA file it names is read, not ignored
        tls_context("cafile=/nonexistent/ca.pem")
