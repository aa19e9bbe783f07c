"""A lean AMQP 0-9-1 consumer for the watchdog's heartbeats: one queue, no acks, frames read in
place.

Why not aio-pika here: a watchdog of 1,000 clusters hears 4,000 heartbeats a second, and
aio-pika/aiormq spend about 130 us of CPU on each (three frames decoded by pamqp, each through
an asyncio queue, a task per delivery) on this 2-core machine: more than half a core for the
transport alone. This reads each frame header with struct, decodes only what a delivery needs
(exchange, routing key, the headers table, the body) and calls back synchronously; everything
else (the handshake, declarations, closes) goes through pamqp as usual. Publishing and
declaring stay with aio-pika (adapters.watchdog_link); this connection only consumes.

Each (re)connection is a sweep over the node list (adapters.amqp_nodes), declares fresh
exclusive server-named queues (a few, see MAX_SHARDS), binds them and consumes; a lost connection (or two missed AMQP
heartbeats) ends it and the next sweep starts a second later.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from pamqp import commands, decode, frame, heartbeat
from pamqp.base import Frame

from shadowline.adapters import amqp_nodes

log = logging.getLogger("shadowline.watchdog")

Delivery = Callable[[str, str, dict[str, Any], bytes], None]  # exchange, key, headers, body
_HEAD = struct.Struct(">BHI")
_DELIVER = (60, 60)
HEARTBEAT = 30  # seconds, proposed to the broker (it takes the lower of its own and this)
# A queue is one Erlang process on the broker: one for 4,000 heartbeats a second became the
# bottleneck on a busy host, and RabbitMQ's credit flow then throttles every publisher routing
# into it (the masters' heartbeats, whose confirms are their lease, and the watchdog's own
# announcements). So the clusters are spread over a few queues, one per PER_SHARD clusters.
MAX_SHARDS = 8
PER_SHARD = 125
HEADERS_FLAG = 1 << 13  # the content header's property flags: the headers table is present


class _Protocol(asyncio.Protocol):
    # Long only because the frame loop is one tight function on the hot path, on purpose.
    def __init__(self, deliver: Delivery) -> None:
        self._deliver = deliver
        self._buffer = bytearray()
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.heard = 0.0
        self.interval = HEARTBEAT  # the AMQP heartbeat agreed on
        self._pending: tuple[str, str] | None = None
        self._headers: dict[str, Any] = {}
        self._size = 0
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.frames.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        self.heard = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 8:
            kind, _channel, size = _HEAD.unpack_from(buffer, start)
            end = start + 7 + size
            if len(buffer) < end + 1:
                break
            payload = bytes(buffer[start + 7 : end])
            start = end + 1
            if kind == 1:
                self._method(payload, buffer[start - size - 8 : start])
            elif kind == 2:
                self._header(payload)
            elif kind == 3:
                self._content(payload)
        del buffer[:start]

    def _method(self, payload: bytes, raw: bytes | bytearray) -> None:
        if struct.unpack_from(">HH", payload) == _DELIVER:
            at = 4
            at += 1 + payload[at]  # consumer tag
            at += 9  # delivery tag, redelivered
            exchange = payload[at + 1 : at + 1 + payload[at]].decode()
            at += 1 + payload[at]
            routing_key = payload[at + 1 : at + 1 + payload[at]].decode()
            self._pending, self._headers, self._body = (exchange, routing_key), {}, []
            return
        found = frame.unmarshal(bytes(raw))[2]
        if isinstance(found, commands.Connection.Close | commands.Channel.Close):
            log.warning("heartbeat consumer closed by the broker: %s %s",
                        found.reply_code, found.reply_text)  # fmt: skip
            if self.transport is not None:
                self.transport.close()
        self.frames.put_nowait(found)  # type: ignore[arg-type]

    def _header(self, payload: bytes) -> None:
        _class, _weight, self._size, flags = struct.unpack_from(">HHQH", payload)
        at = 14
        if flags & (1 << 15):  # content type
            at += 1 + payload[at]
        if flags & (1 << 14):  # content encoding
            at += 1 + payload[at]
        if flags & HEADERS_FLAG:
            self._headers = decode.field_table(payload[at:])[1]
        if self._size == 0:
            self._done()

    def _content(self, payload: bytes) -> None:
        self._body.append(payload)
        self._size -= len(payload)
        if self._size <= 0:
            self._done()

    def _done(self) -> None:
        if self._pending is not None:
            exchange, routing_key = self._pending
            self._pending = None
            self._deliver(exchange, routing_key, self._headers, b"".join(self._body))

    def send(self, command: Any, channel: int = 0) -> None:
        assert self.transport is not None
        self.transport.write(frame.marshal(command, channel))


class LeanConsumer:
    """Consumes a few exclusive queues bound to `bindings` (exchange, routing key), no acks."""

    def __init__(
        self, urls: str, name: str, bindings: list[tuple[str, str]], deliver: Delivery
    ) -> None:
        self._nodes = amqp_nodes.Nodes(urls)
        self._name = name
        self._bindings = bindings
        self._deliver = deliver
        self._protocol: _Protocol | None = None
        self.node: str | None = None
        self.connected = asyncio.Event()
        self._interval = float(HEARTBEAT)

    @property
    def ready(self) -> bool:
        return self._protocol is not None and not self._protocol.lost.done()

    async def run(self) -> None:
        """Consume until cancelled, reconnecting (a sweep over the nodes) after any loss."""
        while True:
            for url in self._nodes.sweep():
                try:
                    await self._session(url)
                except (OSError, ConnectionError, TimeoutError) as error:
                    log.warning(
                        "heartbeat consumer on %s: %s", amqp_nodes.node_of(url), error or "lost"
                    )
                finally:
                    self.connected.clear()
                    self._protocol = None
            await asyncio.sleep(1)

    async def _session(self, url: str) -> None:
        protocol = await self._open(url)
        self._protocol = protocol
        self._nodes.connected(url)
        self.node = amqp_nodes.node_of(url)
        self.connected.set()
        log.info("heartbeat consumer on RabbitMQ node %s", self.node)
        beat = asyncio.create_task(self._heartbeats(protocol))
        try:
            raise ConnectionError(await protocol.lost or "connection closed")
        finally:
            beat.cancel()
            if protocol.transport is not None:
                protocol.transport.close()

    async def _open(self, url: str) -> _Protocol:
        protocol = await open_channel(url, self._name, self._deliver)
        self._interval = protocol.interval
        try:
            await self._consume(protocol)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.close()
            raise
        return protocol

    async def _consume(self, protocol: _Protocol) -> None:
        """Declare the shards, bind each exchange to one of them, consume them all."""
        exchanges = sorted({exchange for exchange, _ in self._bindings})
        shards = max(1, min(MAX_SHARDS, len(exchanges) // PER_SHARD))
        queues = []
        for _ in range(shards):
            protocol.send(commands.Queue.Declare(exclusive=True, auto_delete=True), 1)
            queues.append((await _expect(protocol, commands.Queue.DeclareOk)).queue)
        shard_of = {exchange: queues[n % shards] for n, exchange in enumerate(exchanges)}
        for exchange, key in self._bindings:  # pipelined: one confirmation for all, below
            queue = shard_of[exchange]
            protocol.send(commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=key), 1)
        for _ in self._bindings:
            await _expect(protocol, commands.Queue.BindOk)
        for queue in queues:
            protocol.send(commands.Basic.Consume(queue=queue, no_ack=True), 1)
            await _expect(protocol, commands.Basic.ConsumeOk)

    async def _heartbeats(self, protocol: _Protocol) -> None:
        """Send ours every half interval; two intervals without a byte from the broker: lost."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval / 2)
            protocol.send(heartbeat.Heartbeat())
            if loop.time() - protocol.heard > 2 * self._interval and protocol.transport:
                log.warning("heartbeat consumer: the broker is silent; reconnecting")
                protocol.transport.close()

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.send(commands.Connection.Close(200, "watchdog stopping", 0, 0))
            self._protocol.transport.close()


async def open_channel(url: str, name: str, deliver: Delivery) -> _Protocol:
    """A connection to `url` with channel 1 open (its deliveries go to `deliver`)."""
    parts = urlsplit(url)
    tls = ssl.create_default_context() if parts.scheme == "amqps" else None
    port = parts.port or (5671 if tls else 5672)
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: _Protocol(deliver), parts.hostname or "localhost", port, ssl=tls
        ),
        amqp_nodes.CONNECT_TIMEOUT,
    )
    try:
        await asyncio.wait_for(_handshake(protocol, parts, name), amqp_nodes.CONNECT_TIMEOUT)
    except BaseException:
        if protocol.transport is not None:
            protocol.transport.close()
        raise
    return protocol


async def _handshake(protocol: _Protocol, parts: Any, name: str) -> None:
    assert protocol.transport is not None
    protocol.transport.write(b"AMQP\x00\x00\x09\x01")
    await _expect(protocol, commands.Connection.Start)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    properties: dict[str, Any] = {"connection_name": name, "product": "shadowline"}
    protocol.send(commands.Connection.StartOk(properties, "PLAIN", f"\0{user}\0{password}"))
    tune = await _expect(protocol, commands.Connection.Tune)
    protocol.interval = min(HEARTBEAT, tune.heartbeat or HEARTBEAT)
    protocol.send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, protocol.interval))
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    protocol.send(commands.Connection.Open(vhost))
    await _expect(protocol, commands.Connection.OpenOk)
    protocol.send(commands.Channel.Open(), 1)
    await _expect(protocol, commands.Channel.OpenOk)


async def _expect(protocol: _Protocol, kind: type[Any]) -> Any:
    found = await protocol.frames.get()
    if found is None:
        raise ConnectionError("connection closed during setup")
    if isinstance(found, commands.Connection.Close | commands.Channel.Close):
        raise ConnectionError(f"{found.reply_code} {found.reply_text}")
    if not isinstance(found, kind):
        raise ConnectionError(f"expected {kind.__name__}, got {found.name}")
    return found
