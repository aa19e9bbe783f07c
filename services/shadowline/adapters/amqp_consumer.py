"""A lean AMQP 0-9-1 consumer for the watchdog's heartbeats: one queue, no acks, frames read in
place.

Why not aio-pika here: a watchdog of 1,000 clusters hears 4,000 heartbeats a second, and
aio-pika/aiormq spend about 130 us of CPU on each (three frames decoded by pamqp, each through
an asyncio queue, a task per delivery) on this 2-core machine: more than half a core for the
transport alone. This reads each frame header with struct, decodes only what a delivery needs
(exchange, routing key, the headers table, the body) and calls back synchronously
(adapters.amqp_frame_loop); everything
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
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pamqp import commands, heartbeat

from shadowline.adapters import amqp_nodes
from shadowline.adapters.amqp_frame_loop import FRAME_MAX, HEARTBEAT, Delivery, FrameLoop

log = logging.getLogger("shadowline.watchdog")

# A queue is one Erlang process on the broker: one for 4,000 heartbeats a second became the
# bottleneck on a busy host, and RabbitMQ's credit flow then throttles every publisher routing
# into it (the masters' heartbeats, whose confirms are their lease, and the watchdog's own
# announcements). So the clusters are spread over a few queues, one per PER_SHARD clusters.
MAX_SHARDS = 8
PER_SHARD = 125


class LeanConsumer:
    """Consumes a few exclusive queues bound to `bindings` (exchange, routing key), no acks."""

    def __init__(
        self, urls: str, name: str, bindings: list[tuple[str, str]], deliver: Delivery
    ) -> None:
        self._nodes = amqp_nodes.Nodes(urls)
        self._name = name
        self._bindings = bindings
        self._deliver = deliver
        self._protocol: FrameLoop | None = None
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

    async def _open(self, url: str) -> FrameLoop:
        protocol = await open_channel(url, self._name, self._deliver)
        self._interval = protocol.interval
        try:
            await self._consume(protocol)
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.close()
            raise
        return protocol

    async def _consume(self, protocol: FrameLoop) -> None:
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

    async def _heartbeats(self, protocol: FrameLoop) -> None:
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


async def open_channel(url: str, name: str, deliver: Delivery) -> FrameLoop:
    """A connection to `url` with channel 1 open (its deliveries go to `deliver`)."""
    parts = urlsplit(url)
    tls = tls_context(parts.query) if parts.scheme == "amqps" else None
    port = parts.port or (5671 if tls else 5672)
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: FrameLoop(deliver), parts.hostname or "localhost", port, ssl=tls
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


async def _handshake(protocol: FrameLoop, parts: Any, name: str) -> None:
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


async def _expect(protocol: FrameLoop, kind: type[Any]) -> Any:
    found = await protocol.frames.get()
    if found is None:
        raise ConnectionError("connection closed during setup")
    if isinstance(found, commands.Connection.Close | commands.Channel.Close):
        raise ConnectionError(f"{found.reply_code} {found.reply_text}")
    if not isinstance(found, kind):
        raise ConnectionError(f"expected {kind.__name__}, got {found.name}")
    return found
