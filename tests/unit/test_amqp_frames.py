"""pamqp, made tolerant (adapters.amqp_frames): what a publisher wrote that pamqp cannot read
becomes a marked message, never an exception that closes the connection; the broker's own
frames are read as before."""

from __future__ import annotations

import struct

import pytest
from pamqp import commands, exceptions, frame, header

from shadowline.adapters import amqp_frames

amqp_frames.install()


def method_frame(index: int, arguments: bytes) -> bytes:
    payload = struct.pack(">I", index) + arguments
    return struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce"


def test_a_return_and_a_get_ok_with_a_routing_key_that_is_not_utf8_are_read_with_u_fffd() -> None:
    returned = struct.pack(">H", 312) + b"\x08NO_ROUTE" + b"\x01e" + b"\x02k\xff"
    found = frame.unmarshal(method_frame(commands.Basic.Return.index, returned))[2]
    assert isinstance(found, commands.Basic.Return)
    assert (found.reply_code, found.reply_text, found.routing_key) == (312, "NO_ROUTE", "k\ufffd")
    got = struct.pack(">Q?", 9, False) + b"\x01e" + b"\x01\xfe" + struct.pack(">I", 3)
    found = frame.unmarshal(method_frame(commands.Basic.GetOk.index, got))[2]
    assert isinstance(found, commands.Basic.GetOk)
    assert (found.delivery_tag, found.routing_key, found.message_count) == (9, "\ufffd", 3)


def test_a_content_header_that_cannot_be_read_keeps_its_body_size_and_is_marked() -> None:
    table = b"\x02\xff\xfeS\x00\x00\x00\x01x"
    payload = struct.pack(">HHQH", 60, 0, 123, 1 << 13) + struct.pack(">I", len(table)) + table
    raw = struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"
    found = frame.unmarshal(raw)[2]
    assert isinstance(found, header.ContentHeader)
    assert found.body_size == 123 and found.class_id == 60
    assert set(found.properties.headers or ()) == {amqp_frames.UNREADABLE}


def test_a_broken_frame_of_the_brokers_own_still_closes_the_connection() -> None:
    with pytest.raises(exceptions.UnmarshalingException):  # Queue.DeclareOk cut short
        frame.unmarshal(method_frame(commands.Queue.DeclareOk.index, b"\x05ab"))
    with pytest.raises(exceptions.UnmarshalingException):  # a header too short for its sizes
        frame.unmarshal(struct.pack(">BHI", 2, 1, 4) + b"\x00\x3c\x00\x00" + b"\xce")


def test_good_frames_read_as_pamqp_reads_them() -> None:
    deliver = commands.Basic.Deliver("ctag", 7, True, "ex", "key.é")
    found = frame.unmarshal(frame.marshal(deliver, 1))[2]
    assert isinstance(found, commands.Basic.Deliver)
    assert (found.consumer_tag, found.delivery_tag, found.redelivered) == ("ctag", 7, True)
    assert (found.exchange, found.routing_key) == ("ex", "key.é")


def test_a_long_routing_key_that_is_not_utf8_is_cut_on_a_whole_character() -> None:
    """245 bytes of 0xff are 735 bytes of U+FFFD: cut at 255 inside a character, the second
    decode failed and the connection closed (H7's review)."""
    key = b"heartbeat." + b"\xff" * 245
    deliver = b"\x04ctag" + struct.pack(">Q?", 1, False) + b"\x01e" + bytes([len(key)]) + key
    found = frame.unmarshal(method_frame(commands.Basic.Deliver.index, deliver))[2]
    assert isinstance(found, commands.Basic.Deliver)
    key_read = str(found.routing_key)
    assert key_read.startswith("heartbeat.\ufffd") and len(key_read.encode()) <= 255


def content_header(table: bytes, size: int = 2) -> bytes:
    payload = struct.pack(">HHQH", 60, 0, size, 1 << 13) + struct.pack(">I", len(table)) + table
    return struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"


def test_tables_nested_past_the_recursion_limit_are_marked_not_raised() -> None:
    table = b""
    for _ in range(2000):  # a table holding a table holding ... : pamqp recurses per level
        table = b"\x01n" + b"F" + struct.pack(">I", len(table)) + table
    found = frame.unmarshal(content_header(table))[2]
    assert isinstance(found, header.ContentHeader)
    assert "RecursionError" in str((found.properties.headers or {})[amqp_frames.UNREADABLE])


def test_properties_over_the_cap_are_not_read_at_all() -> None:
    flags = b"\x01a" + b"A" + struct.pack(">I", 60_000) + b"t\x01" * 30_000  # 60,000 booleans
    found = frame.unmarshal(content_header(flags))[2]
    assert isinstance(found, header.ContentHeader)
    assert "not read" in str((found.properties.headers or {})[amqp_frames.UNREADABLE])
    small = frame.unmarshal(content_header(b"\x01kS\x00\x00\x00\x01v"))[2]
    assert isinstance(small, header.ContentHeader)
    assert small.properties.headers == {"k": "v"}, "a table under the cap reads as before"
