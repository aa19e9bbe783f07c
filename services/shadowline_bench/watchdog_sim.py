"""Simulated clusters for `shadowline bench watchdog`: N master+shadow pairs that exist only as
correctly signed heartbeats on the shared broker and as answers to the watchdog's probes.

- Heartbeats: every instance at `interval` (2 Hz by default), their phases spread evenly over
  the interval, MACed with each cluster's own heartbeat key (the per-cluster secrets the
  watchdog reads from its secrets file), published without confirms as raw frames, from a
  process of its own.
- Probes: one aiohttp server answers `GET /c/<cluster>/<instance>/health` for every simulated
  instance, authenticated as an instance answers (peer-answer MAC over the request's
  signature); a stopped master answers 503 unauthenticated, which the watchdog counts as gone.
- Promote commands: one queue bound to every cluster's `promote.*` records when each arrived;
  the promoted shadow then says it is master in the next epoch, as a real one would.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from aiohttp import web

from shadowline.adapters.amqp_consumer import open_channel
from shadowline.adapters.peer_signing import (
    ANSWER_HEADER,
    ANSWERED_BY_HEADER,
    SIGNATURE_HEADER,
    answer_mac,
)
from shadowline.adapters.topology import Names
from shadowline.domain import trust
from shadowline.domain.watchdog_trust import ClusterKeys

STEPS = 50  # publishing slots per interval: each sends 1/STEPS of the heartbeats
CONNECTIONS = 8  # as many instances, as many connections: one would be RabbitMQ's bottleneck


@dataclass(slots=True)
class Pair:
    cluster: str
    keys: ClusterKeys
    epoch: int = 1
    master_alive: bool = True
    promoted: bool = False
    promote_at: float | None = None  # monotonic, when the first promote command arrived
    promotes: int = 0


class Simulation:
    # Long only because it names the state it shares with its publisher process, once.
    def __init__(self, url: str, secrets: dict[str, str], port: int, interval: float) -> None:
        self._url = url
        self.port = port
        self.interval = interval
        self.pairs = {c: Pair(c, ClusterKeys(c, s)) for c, s in secrets.items()}
        self._secrets = secrets
        self._index = {c: n for n, c in enumerate(secrets)}
        self._boot = "00" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:14]
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._runner: web.AppRunner | None = None
        # The heartbeats come from a process of their own (its own share of the CPU; the
        # probes and promote commands this process answers and times wait for no heartbeat);
        # what the two share: alive masters and epochs in, last master heartbeats and the
        # count out. CLOCK_MONOTONIC is one clock for both.
        context = multiprocessing.get_context("spawn")
        n = len(secrets)
        self._alive = context.Array("b", [1] * n, lock=False)
        self._epoch = context.Array("i", [1] * n, lock=False)
        self._last = context.Array("d", [0.0] * n, lock=False)
        self._count = context.Value("q", 0, lock=False)
        self.backlog = context.Value("q", 0, lock=False)  # most bytes the broker left unread
        self._stop = context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._context = context
        self.rate = 0.0  # heartbeats a second over the steady window, measured by the bench

    @property
    def published(self) -> int:
        return int(self._count.value)

    def last_master_beat(self, cluster: str) -> float:
        return float(self._last[self._index[cluster]])

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self._url.split(",")[0])
        self._connection.close_callbacks.add(
            lambda _, error: print(f"the simulation's broker connection closed: {error!r}")
        )
        channel = await self._connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for cluster in self.pairs:
            names = Names(cluster)
            for name in (names.monitoring, names.commands):
                await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
            await queue.bind(names.commands, "promote.*")
        await queue.consume(self._promoted, no_ack=True)
        app = web.Application()
        app.router.add_get("/c/{cluster}/{instance}/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        shared = (self._alive, self._epoch, self._last, self._count, self.backlog, self._stop)
        args = (self._url, self._secrets, self.port, self.interval, self._boot, shared)
        self._process = self._context.Process(target=publish_heartbeats, args=args, daemon=True)
        self._process.start()

    async def _health(self, request: web.Request) -> web.Response:
        pair = self.pairs.get(request.match_info["cluster"])
        instance = request.match_info["instance"]
        if pair is None or (instance == "master" and not pair.master_alive):
            return web.Response(status=503)
        role = "master" if instance == "master" or pair.promoted else "shadow"
        body = orjson.dumps({"instance": instance, "role": role, "epoch": pair.epoch})
        mac = answer_mac(
            pair.keys.secret,
            pair.cluster,
            instance,
            request.headers.get(SIGNATURE_HEADER, ""),
            request.method,
            request.raw_path,
            200,
            hashlib.sha256(body).digest(),
        )
        headers = {ANSWERED_BY_HEADER: instance, ANSWER_HEADER: mac}
        return web.Response(body=body, headers=headers, content_type="application/json")

    async def _promoted(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        cluster = (message.exchange or "").removeprefix("shadowline.").removesuffix(".commands")
        pair = self.pairs.get(cluster)
        if pair is None:
            return
        pair.promotes += 1
        if pair.promote_at is None:
            pair.promote_at = time.monotonic()
            doc = orjson.loads(message.body)
            pair.epoch, pair.promoted = int(doc["epoch"]), True
            self._epoch[self._index[cluster]] = pair.epoch

    def stop_master(self, cluster: str) -> None:
        self.pairs[cluster].master_alive = False
        self._alive[self._index[cluster]] = 0

    async def close(self) -> None:
        self._stop.set()
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 10)
            if self._process.is_alive():
                self._process.kill()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._connection is not None:
            await self._connection.close()


async def delete_exchanges(url: str, clusters: list[str]) -> None:
    """Remove every exchange the bench's clusters had (the watchdog declared the same ones)."""
    connection = await aio_pika.connect(url.split(",")[0])
    try:
        channel = await connection.channel()
        for cluster in clusters:
            names = Names(cluster)
            for name in (names.monitoring, names.commands):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


def publish_heartbeats(
    url: str, secrets: dict[str, str], port: int, interval: float, boot: str, shared: Any
) -> None:
    """The publisher process: every instance's heartbeat once an interval until told to stop."""
    asyncio.run(_Publisher(url, secrets, port, interval, boot, shared).run())


class _Publisher:
    # Long only because it keeps each cluster's keys, counters and shared slots side by side.
    def __init__(
        self, url: str, secrets: dict[str, str], port: int, interval: float, boot: str, shared: Any
    ) -> None:
        self._url, self._port, self._interval, self._boot = url, port, interval, boot
        self._alive, self._epoch, self._last, self._count, self._backlog, self._stop = shared
        self._keys = [ClusterKeys(c, s) for c, s in secrets.items()]
        self._exchanges = [Names(c).monitoring.encode() for c in secrets]
        self._seq = [[0, 0] for _ in secrets]

    def _url_of(self, cluster: str, instance: str) -> str:
        return f"http://127.0.0.1:{self._port}/c/{cluster}/{instance}"

    def _beat(self, n: int, instance: str) -> tuple[bytes, bytes, bytes]:
        cluster, epoch = self._keys[n].cluster, int(self._epoch[n])
        other = "shadow" if instance == "master" else "master"
        promoted = epoch > 1
        master = instance == "master" or promoted
        seq = self._seq[n]
        seq[instance == "shadow"] += 1
        body = {
            "instance": instance,
            "role": "master" if master else "shadow",
            "epoch": epoch,
            "committed": 100,
            "applied": 100,
            "replication": "sync" if master else None,
            "acked": 100 if master else None,
            "peer": None if promoted else other,
            "peer_url": None if promoted else self._url_of(cluster, other),
            "maintenance": False,
            "cluster": cluster,
            "url": self._url_of(cluster, instance),
            "seq": seq[instance == "shadow"],
            "boot": self._boot,
            "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "interval": self._interval,
        }
        raw = orjson.dumps(body)
        key = f"heartbeat.{instance}"
        return key.encode(), raw, self._keys[n].mac(key, raw).encode()

    async def run(self) -> None:
        """In STEPS even slots an interval (no burst), as raw Basic.Publish frames (aio-pika
        would need about a core for 4,000 messages a second on this machine)."""
        url = self._url.split(",")[0]
        protocols = [
            await open_channel(url, f"bench watchdog heartbeats {k}", _drop)
            for k in range(CONNECTIONS)
        ]
        instances = [(n, i) for n in range(len(self._keys)) for i in ("master", "shadow")]
        slots = [instances[k::STEPS] for k in range(STEPS)]
        step = self._interval / STEPS
        expiration = str(int(3000 * self._interval)).encode()
        due = time.monotonic()
        while not self._stop.is_set():
            for slot in slots:
                due += step
                out = [bytearray() for _ in protocols]
                for n, instance in slot:
                    if instance == "master" and not self._alive[n]:
                        continue
                    key, body, mac = self._beat(n, instance)
                    frames = publish_frames(self._exchanges[n], key, mac, expiration, body)
                    out[n % CONNECTIONS] += frames
                    if instance == "master":
                        self._last[n] = time.monotonic()
                for protocol, data in zip(protocols, out, strict=True):
                    assert protocol.transport is not None
                    protocol.transport.write(bytes(data))
                    backlog = protocol.transport.get_write_buffer_size()
                    self._backlog.value = max(self._backlog.value, backlog)
                self._count.value += len(slot)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()


def _drop(*_: object) -> None:
    """The publishing connection consumes nothing."""


_MAC_KEY = trust.MAC_HEADER.encode()
_FLAGS = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 8)  # content type, headers, mode, expiration


def _frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, 1, len(payload)) + payload + b"\xce"


def publish_frames(
    exchange: bytes, key: bytes, mac: bytes, expiration: bytes, body: bytes
) -> bytes:
    """Basic.Publish of `body` on channel 1, as its three frames: transient, not mandatory,
    content type application/json, the MAC header, the expiration (ms)."""
    method = struct.pack(">HHHB", 60, 40, 0, len(exchange)) + exchange
    method += bytes([len(key)]) + key + b"\x00"
    entry = bytes([len(_MAC_KEY)]) + _MAC_KEY + b"S" + struct.pack(">I", len(mac)) + mac
    table = struct.pack(">I", len(entry)) + entry
    content_type = b"\x10application/json"
    props = content_type + table + b"\x01" + bytes([len(expiration)]) + expiration
    header = struct.pack(">HHQH", 60, 0, len(body), _FLAGS) + props
    return _frame(1, method) + _frame(2, header) + _frame(3, body)
