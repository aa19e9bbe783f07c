"""Several RabbitMQ nodes of one cluster behind one SHADOWLINE_AMQP_URL (comma-separated).

aio-pika connects to one URL. `Nodes` keeps the list and the order in which to try it: the node
after the one last connected to first (it was lost, or refused us), so a process that loses its
node moves to the next one; every node once before a sweep counts as failed. `connect_robust`
gives a RobustConnection that makes every (re)connection attempt such a sweep, and restores its
channels, queues, bindings and consumers on whichever node answers; `connect` does one sweep for
the plain connections that reconnect by themselves (the screen's feed, the client).

Every log line names a node by host:port (`node_of`), never by its URL: the URL holds the
password.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika import RobustChannel, RobustConnection, RobustQueue
from aio_pika.abc import AbstractConnection
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

from shadowline.adapters import amqp_frames

log = logging.getLogger("shadowline.adapters.broker")
# Every connection of the program comes from here: none may be closed by a publisher's bytes.
amqp_frames.install()

# How long one node may take to accept a connection (TCP, AMQP handshake, channel restore)
# before the next is tried: a stopped or cut-off node accepts TCP and then says nothing.
CONNECT_TIMEOUT = 2.0
# The pause after a sweep in which no node answered: short, since a master has its lease
# (a fraction of SHADOWLINE_TAKEOVER_DELAY) to find another node before it fences itself.
RECONNECT_INTERVAL = 0.2
SCHEMES = {"amqp": 5672, "amqps": 5671}


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """The AMQP URLs of a comma-separated list (or a list), in order; ValueError when there is
    none or one is no amqp:// or amqps:// URL with a host (the message names no password)."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    found = [u.strip() for u in items if u.strip()]
    if not found:
        raise ValueError("no AMQP URL given")
    for url in found:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            shown = f"{parts.scheme}://{parts.hostname or ''}"  # never the password
            raise ValueError(f"not an AMQP URL (amqp://user:password@host:port/vhost): {shown}")
    return found


def node_of(url: str) -> str:
    """host:port of an AMQP URL, the port defaulted by scheme: how logs and gauges name a node."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or SCHEMES.get(parts.scheme, 5672)}"


class Nodes:
    """The nodes of one broker cluster and which one to try next."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = split_urls(urls)
        self._last: int | None = None  # the node last connected to

    @property
    def names(self) -> list[str]:
        return [node_of(u) for u in self.urls]

    def sweep(self) -> list[str]:
        """Every node once: the one after the last connected to first (on the first connection,
        the first listed), and that one last (it may have been a blip)."""
        start = 0 if self._last is None else self._last + 1
        count = len(self.urls)
        return [self.urls[(start + i) % count] for i in range(count)]

    def connected(self, url: str) -> None:
        self._last = self.urls.index(url)

    async def connect(self, per_node: float = CONNECT_TIMEOUT, **kwargs: Any) -> AbstractConnection:
        """A plain connection to the first node of a sweep that answers (ConnectionError with
        every node's error when none does). kwargs go to aio_pika.connect."""
        errors: list[str] = []
        for url in self.sweep():
            try:
                connection: AbstractConnection = await aio_pika.connect(
                    url, timeout=per_node, **kwargs
                )
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
                errors.append(f"{node_of(url)}: {_said(error)}")
                log.warning("RabbitMQ node %s did not answer: %s", node_of(url), _said(error))
                continue
            self.connected(url)
            log.info("connected to RabbitMQ node %s", node_of(url))
            return connection
        raise ConnectionError("no RabbitMQ node answered (" + "; ".join(errors) + ")")


def _said(error: BaseException) -> str:
    return str(error) or type(error).__name__


class _Stamped:
    """aiormq's reader of the socket, noting when bytes last came (it only awaits `read` and
    `readexactly` and asks `at_eof`; the rest is passed on)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.last = asyncio.get_running_loop().time()

    async def readexactly(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self.last = asyncio.get_running_loop().time()
        return data

    async def read(self, n: int = -1) -> bytes:
        data = await self._reader.read(n)
        self.last = asyncio.get_running_loop().time()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _Sockets(TransportFactory):
    """aiormq's transport factory (its public hook), remembering the stream it opened last so
    that a node that stops answering can be told (nothing read for a while) and dropped at
    once: an AMQP close handshake with a frozen node waits for seconds, an aborted socket not."""

    def __init__(self) -> None:
        self._tcp, self._tls = TCPTransportFactory(), TLSTransportFactory()
        self.writer: asyncio.StreamWriter | None = None
        self.reader: _Stamped | None = None

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        factory = self._tls if url.scheme == "amqps" else self._tcp
        reader, writer = await factory.create(url, **kwargs)
        self.writer, self.reader = writer, _Stamped(reader)
        return self.reader, writer  # type: ignore[return-value]  # read as a StreamReader


class _FreshQueue(RobustQueue):
    """A server-named exclusive queue that takes a new name each time it is restored.

    aio-pika names such a queue itself (amq_<uuid>) so that it can declare it again after a
    reconnection. But an exclusive queue stays locked by the connection that declared it until
    the broker notices that connection is gone: after leaving a frozen node, declaring the same
    name on the next node fails (RESOURCE_LOCKED) for as long as the cluster takes to notice
    (net_ticktime: 60 s by default). A new name has no such lock; the old queue goes with the
    old connection. Bindings and consumers are restored on the new name as usual."""

    async def restore(self, channel: Any = None) -> None:
        if self.exclusive and self.name.startswith("amq_"):
            self.name = f"amq_{uuid.uuid4().hex}"
        await super().restore()


class _NodeChannel(RobustChannel):
    QUEUE_CLASS = _FreshQueue


class NodeConnection(RobustConnection):
    """A RobustConnection over `Nodes`: each (re)connection attempt is a sweep.

    RobustConnection makes every attempt in its private `__connect_transport`, reading
    `self.url`; this override sets the URL to each node of a sweep in turn and calls it
    (tests/unit/test_amqp_nodes.py fails should an aio-pika release rename it). Channels are
    restored by aio-pika inside the attempt, on the node that answered.
    """

    CHANNEL_CLASS = _NodeChannel

    def __init__(self, nodes: Nodes, **kwargs: Any) -> None:
        super().__init__(URL(nodes.urls[0]), **kwargs)
        # aio-pika passes `kwargs` to aiormq.connect for each (re)connection, keeping only the
        # parameters it knows, so the factory goes in afterwards.
        self._sockets = _Sockets()
        self.kwargs["transport_factory"] = self._sockets
        self.nodes = nodes
        self.node: str | None = None  # host:port while connected, else None
        self._trying: str | None = None
        self.close_callbacks.add(self._lost)
        self.up = False  # connected and its channels restored
        self.reconnect_callbacks.add(self._restored)

    def _restored(self, *_: object) -> None:
        self.up = True

    def abandon(self, why: str, silent: float = 0.0) -> bool:
        """Drop the node this connection is on (its socket aborted: no close handshake), so
        that it reconnects to the next node, if it is up (restored) and nothing came from it
        for `silent` seconds; whether it did. For a node that stopped answering with its TCP
        connection open (frozen, behind a firewall that drops packets): AMQP heartbeats would
        notice after seconds. A node that is slow but alive keeps sending (others' heartbeats,
        confirms) and is kept: leaving it costs a reconnection, which costs more."""
        writer, reader = self._sockets.writer, self._sockets.reader
        if not self.up or writer is None or reader is None or writer.transport.is_closing():
            return False
        if asyncio.get_running_loop().time() - reader.last < silent:
            return False
        log.warning("leaving RabbitMQ node %s: %s", self.node, why)
        writer.transport.abort()
        return True

    def quiet(self) -> float | None:
        """Seconds since anything came from the node; None while not up."""
        reader = self._sockets.reader
        if not self.up or reader is None:
            return None
        return asyncio.get_running_loop().time() - reader.last

    async def _on_connected(self) -> None:
        # The transport is up: the channels are restored next, then the reconnect callbacks
        # run, which may read `node`.
        self.node = self._trying
        await super()._on_connected()

    def _lost(self, *_: object) -> None:
        self.up = False
        if self.node is not None and not self.close_called:
            log.warning("connection to RabbitMQ node %s lost", self.node)
        self.node = None

    async def _RobustConnection__connect_transport(self) -> None:
        attempt = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]
        errors: list[str] = []
        for url in self.nodes.sweep():
            self.url, self._trying = URL(url), node_of(url)
            try:
                await attempt(self)
            except Exception as failed:  # a refused TCP connect, a timeout, a channel not restored
                errors.append(f"{node_of(url)}: {_said(failed)}")
                log.warning("RabbitMQ node %s did not answer: %s", node_of(url), _said(failed))
                continue
            self.nodes.connected(url)
            log.info("connected to RabbitMQ node %s", self.node)
            return
        # A ConnectionError: aio-pika's fail-fast start raises it, later sweeps are retried.
        raise ConnectionError("no RabbitMQ node answered (" + "; ".join(errors) + ")")


async def connect_robust(
    urls: str | Sequence[str] | Nodes,
    name: str,
    *,
    per_node: float = CONNECT_TIMEOUT,
    reconnect_interval: float = RECONNECT_INTERVAL,
) -> NodeConnection:
    """A robust connection to the first node that answers; raises when none does (as
    aio-pika's fail-fast start). `per_node` bounds each node's attempt."""
    nodes = urls if isinstance(urls, Nodes) else Nodes(urls)
    connection = NodeConnection(
        nodes,
        client_properties={"connection_name": name},
        reconnect_interval=reconnect_interval,
    )
    try:
        await connection.connect(timeout=per_node)
    except BaseException:
        await asyncio.shield(connection.close())
        raise
    connection.up = True
    return connection
