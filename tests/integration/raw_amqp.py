"""A publisher that writes AMQP frames byte by byte, as an attacker with a broker login can:
properties no client library would encode (a headers table pamqp cannot read) and routing keys
that are not UTF-8. RabbitMQ hands both on to every consumer as written."""

from __future__ import annotations

import asyncio
import struct
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame

HEADERS_FLAG = 1 << 13
# A key that is not UTF-8, at the top and in a nested table. (RabbitMQ itself refuses a table
# with a field type AMQP has not, 541 INTERNAL_ERROR, so that one never reaches a consumer.)
BAD_KEY_TABLE = b"\x02\xff\xfeS\x00\x00\x00\x01x"
NESTED_BAD_KEY_TABLE = b"\x01nF\x00\x00\x00\x09\x02\xff\xfeS\x00\x00\x00\x01x"
NOT_UTF8_KEY = b"heartbeat.\xff\xfe"


def _frame(kind: int, payload: bytes, channel: int = 1) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def publish_frames(exchange: bytes, key: bytes, table: bytes | None, body: bytes) -> bytes:
    """Basic.Publish of `body` on channel 1: `table` as the headers table's raw bytes."""
    method = struct.pack(">HHHB", 60, 40, 0, len(exchange)) + exchange
    method += bytes([len(key)]) + key + b"\x00"
    flags = HEADERS_FLAG if table is not None else 0
    header = struct.pack(">HHQH", 60, 0, len(body), flags)
    if table is not None:
        header += struct.pack(">I", len(table)) + table
    return _frame(1, method) + _frame(2, header) + _frame(3, body)


async def publish_raw(url: str, messages: list[tuple[bytes, bytes, bytes | None, bytes]]) -> str:
    """Log in to the broker at `url` and publish each (exchange, key, table, body) as is; what
    the broker said when the channel closed ("200 done" when it took them all)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 5672)

    async def read() -> object:
        head = await reader.readexactly(7)
        size = struct.unpack(">I", head[3:7])[0]
        return frame.unmarshal(head + await reader.readexactly(size + 1))[2]

    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        await read()
        login = f"\0{unquote(parts.username or 'guest')}\0{unquote(parts.password or 'guest')}"
        writer.write(frame.marshal(commands.Connection.StartOk({}, "PLAIN", login), 0))
        tune = await read()
        assert isinstance(tune, commands.Connection.Tune)
        writer.write(
            frame.marshal(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0)
        )
        writer.write(frame.marshal(commands.Connection.Open(unquote(parts.path[1:]) or "/"), 0))
        await read()
        writer.write(frame.marshal(commands.Channel.Open(), 1))
        await read()
        for exchange, key, table, body in messages:
            writer.write(publish_frames(exchange, key, table, body))
        # A confirm-less channel: closing it cleanly is what tells us the broker took them all.
        writer.write(frame.marshal(commands.Channel.Close(200, "done", 0, 0), 1))
        while True:
            found = await read()
            if isinstance(found, commands.Channel.CloseOk):
                return "200 done"
            if isinstance(found, commands.Channel.Close | commands.Connection.Close):
                return f"{found.reply_code} {found.reply_text}"  # the broker refused one
    finally:
        writer.close()
