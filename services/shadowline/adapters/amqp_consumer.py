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
exclusive server-named queues (a few, see MAX_SHARDS), binds them and consumes; a lost
connection, two missed AMQP heartbeats, a broken stream or a cancelled consumer end it and the
next sweep starts a second later.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from pamqp import commands, decode, frame, heartbeat
from pamqp.base import Frame

from shadowline.adapters import amqp_frames, amqp_nodes
from shadowline.domain import trust

log = logging.getLogger("shadowline.watchdog")

Delivery = Callable[[str, str, dict[str, Any], bytes], None]  # exchange, key, headers, body
_HEAD = struct.Struct(">BHI")
_DELIVER = struct.pack(">HH", 60, 60)  # Basic.Deliver: class 60, method 60
# Seconds, proposed to the broker (the lower of its own and this is used): a broker node that
# freezes (SIGSTOP, a stalled VM) is given up after two silent intervals, then the next node.
HEARTBEAT = 5
# A queue is one Erlang process on the broker: one for 4,000 heartbeats a second became the
# bottleneck on a busy host, and RabbitMQ's credit flow then throttles every publisher routing
# into it (the masters' heartbeats, whose confirms are their lease, and the watchdog's own
# announcements). So the clusters are spread over a few queues, one per PER_SHARD clusters.
MAX_SHARDS = 8
PER_SHARD = 125
HEADERS_FLAG = 1 << 13  # the content header's property flags: the headers table is present
FRAME_END = 0xCE
FRAME_MAX = 131_072  # RabbitMQ's default; the handshake takes the broker's if lower
MAX_KEPT = trust.MAX_MESSAGE  # bytes of a body kept: one more than this and it is refused


class _Protocol(asyncio.Protocol):
    """The frame loop. Whatever a publisher put in a message (any broker user may publish to a
    heartbeat exchange) costs that message only: a headers table pamqp cannot read or a routing
    key that is not UTF-8 is delivered marked as adapters.amqp_frames does (and refused, since
    no MAC matches it); a handler that raises drops the one delivery, counted and logged. What only
    the broker writes (frame ends, sizes within frame_max, methods) is checked too; a broken
    stream closes the connection, and the next sweep opens a fresh one."""

    def __init__(self, deliver: Delivery) -> None:
        self._deliver = deliver
        self._buffer = bytearray()
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.heard = 0.0
        self.interval = HEARTBEAT  # the AMQP heartbeat agreed on
        self.frame_max = FRAME_MAX  # lowered to the broker's in the handshake
        self.dropped = 0  # deliveries that could not be read or handled
        self.broken: str | None = None  # why the stream was given up, if it was
        self._pending: tuple[str, str] | None = None
        self._headers: dict[str, Any] = {}
        self._size = 0
        self._kept = 0
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc or (ConnectionError(self.broken) if self.broken else None))
        self.frames.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        if self.broken is not None:
            return
        self.heard = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 8:
            kind, _channel, size = _HEAD.unpack_from(buffer, start)
            if size > self.frame_max:
                return self._break(f"a frame of {size} bytes (frame_max {self.frame_max})")
            end = start + 7 + size
            if len(buffer) < end + 1:
                break
            if buffer[end] != FRAME_END:
                return self._break(f"frame end 0x{buffer[end]:02x}, not 0xce")
            payload = bytes(buffer[start + 7 : end])
            start = end + 1
            if kind == 1:
                self._method(payload, buffer[start - size - 8 : start])
            elif kind == 2:
                self._guarded(self._header, payload)
            elif kind == 3:
                self._guarded(self._content, payload)
            if self.broken is not None:
                return
        del buffer[:start]

    def _break(self, why: str) -> None:
        self.broken = why
        log.warning("heartbeat consumer: the broker's stream is broken (%s); reconnecting", why)
        self._buffer.clear()
        if self.transport is not None:
            self.transport.close()

    def _guarded(self, step: Callable[[bytes], None], payload: bytes) -> None:
        """One step of a delivery; an error costs that delivery only."""
        try:
            step(payload)
        except Exception as error:
            self._drop(error)

    def _drop(self, error: Exception) -> None:
        self.dropped += 1
        self._pending, self._headers, self._body = None, {}, []
        if self.dropped & (self.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: no flood
            log.warning("heartbeat consumer dropped a delivery it could not read or handle "
                        "(%d so far): %r", self.dropped, error)  # fmt: skip

    def _method(self, payload: bytes, raw: bytes | bytearray) -> None:
        if payload[:4] == _DELIVER:
            try:
                self._start_delivery(payload)
            except Exception as error:  # a Deliver cut short
                self._drop(error)
            return
        try:
            found = frame.unmarshal(bytes(raw))[2]
        except Exception as error:
            return self._break(f"a method frame pamqp cannot read: {error!r}")
        if isinstance(found, commands.Connection.Close | commands.Channel.Close):
            log.warning("heartbeat consumer closed by the broker: %s %s",
                        found.reply_code, found.reply_text)  # fmt: skip
            if self.transport is not None:
                self.transport.close()
        elif isinstance(found, commands.Basic.Cancel):  # a queue deleted under us
            log.warning("heartbeat consumer cancelled by the broker; reconnecting")
            if self.transport is not None:
                self.transport.close()
        self.frames.put_nowait(found)  # type: ignore[arg-type]

    def _start_delivery(self, payload: bytes) -> None:
        at = 4
        at += 1 + payload[at]  # consumer tag
        at += 9  # delivery tag, redelivered
        exchange = payload[at + 1 : at + 1 + payload[at]].decode()
        at += 1 + payload[at]
        routing_key = payload[at + 1 : at + 1 + payload[at]].decode("utf-8", "replace")
        self._pending, self._headers, self._body = (exchange, routing_key), {}, []
        self._size = self._kept = 0

    def _header(self, payload: bytes) -> None:
        _class, _weight, self._size, flags = struct.unpack_from(">HHQH", payload)
        at = 14
        if flags & (1 << 15):  # content type
            at += 1 + payload[at]
        if flags & (1 << 14):  # content encoding
            at += 1 + payload[at]
        if flags & HEADERS_FLAG and self._pending is not None:
            try:
                self._headers = decode.field_table(payload[at:])[1]
            except ValueError as error:  # as adapters.amqp_frames: delivered, marked, refused
                self._headers = {amqp_frames.UNREADABLE: str(error)[:200]}
        if self._size == 0:
            self._done()

    def _content(self, payload: bytes) -> None:
        self._size -= len(payload)
        # No more than one byte past the largest message is kept: the check of its size
        # (domain.trust) refuses it all the same, and a huge body costs no memory here.
        if self._pending is not None and self._kept <= MAX_KEPT:
            self._body.append(payload[: MAX_KEPT + 1 - self._kept])
            self._kept += len(self._body[-1])
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
                except Exception:  # never die unobserved: a deaf watchdog would look alive
                    log.exception("heartbeat consumer on %s failed", amqp_nodes.node_of(url))
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
    tls = tls_context(parts.query) if parts.scheme == "amqps" else None
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


def tls_context(query: str) -> ssl.SSLContext:
    """The TLS context an amqps:// URL asks for, read from the query parameters aio-pika
    (aiormq) reads for the instance's connections: cafile, capath, certfile, keyfile and
    no_verify_ssl, so one URL means the same on every connection of the program."""
    options = {key: values[-1] for key, values in parse_qs(query).items()}
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=options.get("cafile"), capath=options.get("capath")
    )
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("no_verify_ssl", "0") != "0":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _handshake(protocol: _Protocol, parts: Any, name: str) -> None:
    assert protocol.transport is not None
    protocol.transport.write(b"AMQP\x00\x00\x09\x01")
    await _expect(protocol, commands.Connection.Start)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    properties: dict[str, Any] = {
        "connection_name": name,
        "product": "shadowline",
        "capabilities": {"consumer_cancel_notify": True},  # a deleted queue is told, not silent
    }
    protocol.send(commands.Connection.StartOk(properties, "PLAIN", f"\0{user}\0{password}"))
    tune = await _expect(protocol, commands.Connection.Tune)
    protocol.interval = min(HEARTBEAT, tune.heartbeat or HEARTBEAT)
    protocol.frame_max = min(FRAME_MAX, tune.frame_max or FRAME_MAX)
    protocol.send(
        commands.Connection.TuneOk(tune.channel_max, protocol.frame_max, protocol.interval)
    )
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
