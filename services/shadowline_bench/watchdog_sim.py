"""Simulated clusters for `shadowline bench watchdog`: N master+shadow pairs that exist only as
correctly signed heartbeats on the shared broker and as answers to the watchdog's probes.

- Heartbeats: every instance at `interval` (2 Hz by default), their phases spread evenly over
  the interval, MACed with each cluster's own heartbeat key (the per-cluster secrets the
  watchdog reads from its secrets file), published without confirms as raw frames, from a
  thread of their own.
- Probes: one aiohttp server answers `GET /c/<cluster>/<instance>/health` for every simulated
  instance, authenticated as an instance answers (peer-answer MAC over the request's
  signature); a stopped master answers 503 unauthenticated, which the watchdog counts as gone.
- Promote commands: one queue bound to every cluster's `promote.*` records when each arrived;
  the promoted shadow then says it is master in the next epoch, as a real one would.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


@dataclass(slots=True)
class Pair:
    cluster: str
    keys: ClusterKeys
    epoch: int = 1
    master_alive: bool = True
    promoted: bool = False
    last_master_beat: float = 0.0  # monotonic, when the master's last heartbeat was sent
    promote_at: float | None = None  # monotonic, when the first promote command arrived
    promotes: int = 0
    seq: dict[str, int] = field(default_factory=lambda: {"master": 0, "shadow": 0})

    @property
    def exchange(self) -> bytes:
        return Names(self.cluster).monitoring.encode()


class Simulation:
    def __init__(self, url: str, secrets: dict[str, str], port: int, interval: float) -> None:
        self._url = url
        self.port = port
        self.interval = interval
        self.pairs = {c: Pair(c, ClusterKeys(c, s)) for c, s in secrets.items()}
        self._boot = "00" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:14]
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.published = 0
        self.rate = 0.0  # heartbeats a second over the steady window, measured by the bench

    def _url_of(self, cluster: str, instance: str) -> str:
        return f"http://127.0.0.1:{self.port}/c/{cluster}/{instance}"

    def _beat(self, pair: Pair, instance: str) -> tuple[bytes, bytes, bytes]:
        other = "shadow" if instance == "master" else "master"
        master = instance == "master" or pair.promoted
        role = "master" if master else "shadow"
        pair.seq[instance] += 1
        body = {
            "instance": instance,
            "role": role,
            "epoch": pair.epoch,
            "committed": 100,
            "applied": 100,
            "replication": "sync" if master else None,
            "acked": 100 if master else None,
            "peer": None if pair.promoted else other,
            "peer_url": None if pair.promoted else self._url_of(pair.cluster, other),
            "maintenance": False,
            "cluster": pair.cluster,
            "url": self._url_of(pair.cluster, instance),
            "seq": pair.seq[instance],
            "boot": self._boot,
            "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "interval": self.interval,
        }
        raw = orjson.dumps(body)
        key = f"heartbeat.{instance}"
        return key.encode(), raw, pair.keys.mac(key, raw).encode()

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
        # Publishing on a thread and loop of its own: the probes and promote commands this
        # loop answers and times are not queued behind 40 heartbeats every 10 ms.
        self._thread = threading.Thread(target=lambda: asyncio.run(self._publish()), daemon=True)
        self._thread.start()

    async def _publish(self) -> None:
        """Every interval, each instance once, in STEPS even slots (no burst at the start),
        as raw Basic.Publish frames on a connection of its own (aio-pika would need a core
        for 4,000 messages a second on this machine, and the watchdog would wait for it)."""
        protocol = await open_channel(self._url.split(",")[0], "bench watchdog heartbeats", _drop)
        assert protocol.transport is not None
        instances = [(p, i) for p in self.pairs.values() for i in ("master", "shadow")]
        slots = [instances[k::STEPS] for k in range(STEPS)]
        step = self.interval / STEPS
        expiration = str(int(3000 * self.interval)).encode()
        due = time.monotonic()
        while not self._stop.is_set():
            for slot in slots:
                due += step
                out = bytearray()
                for pair, instance in slot:
                    if instance == "master" and not pair.master_alive:
                        continue
                    key, body, mac = self._beat(pair, instance)
                    out += publish_frames(pair.exchange, key, mac, expiration, body)
                    if instance == "master":
                        pair.last_master_beat = time.monotonic()
                protocol.transport.write(bytes(out))
                if self._stop.is_set():
                    break
                self.published += len(slot)
                await asyncio.sleep(max(0.0, due - time.monotonic()))

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

    def stop_master(self, cluster: str) -> None:
        self.pairs[cluster].master_alive = False

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
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
