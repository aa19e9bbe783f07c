"""Load for the replication benchmark: PUTs to the master over raw keep-alive HTTP/1.1.

On a 2-core machine the client competes with the master, its shadow, two PostgreSQL servers'
worth of backends and RabbitMQ. A general HTTP client (httpx) costs several hundred
microseconds of CPU per request; this one writes a prebuilt request and reads the status line,
the headers and a Content-Length body off an asyncio stream, which costs a fraction of that.
It speaks only what the instance answers to PUT (uvicorn: Content-Length, keep-alive).

Two shapes: closed loop (`clients` connections, each sending its next request as soon as the
previous one is answered, for T seconds: the master's maximum rate) and open loop (request i
is due at start + i/rate whatever happened before it; at most `connections` in flight, and a
latency counts from the due time, so a stall is not hidden by the requests it held back).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from shadowline_bench.common import KIND, system_mapping

ACKED = (200, 201)


class Connection:
    """One keep-alive HTTP/1.1 connection to an instance."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def send(self, request: bytes) -> int:
        """Send one request, read its whole answer, return the status (0: connection failed)."""
        try:
            reader, writer = await self._open()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            return int(head[9:12])
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()
            return 0

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class PutRequests:
    """Prebuilt PUT requests of the shared workload (1,000 items, each write a real change)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        hostport = url.removeprefix("http://").rstrip("/")
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._head = (
            f"Host: {hostport}\r\nAuthorization: Basic {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()

    def __call__(self, i: int) -> bytes:
        name, value = system_mapping(i)
        body = orjson.dumps(value)
        return (
            f"PUT /config/{KIND}/{name} HTTP/1.1\r\n".encode()
            + self._head
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    def connections(self, count: int) -> list[Connection]:
        return [Connection(self.host, self.port) for _ in range(count)]


@dataclass
class Outcome:
    """What the clients saw: acknowledged writes, failures by status, latencies."""

    acked: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list, repr=False)
    statuses: Counter[int] = field(default_factory=Counter)
    start_delays_ns: list[int] = field(default_factory=list, repr=False)
    next_index: int = 0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in ACKED)

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    def record(self, status: int, latency_ns: int) -> None:
        self.statuses[status] += 1
        if status in ACKED:
            self.acked += 1
            self.latencies_ns.append(latency_ns)


async def closed_loop(
    requests: Callable[[int], bytes], connections: list[Connection], start: int, seconds: float
) -> Outcome:
    """Every connection sends back to back until `seconds` have passed."""
    outcome = Outcome(next_index=start)
    deadline = time.perf_counter() + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            i, outcome.next_index = outcome.next_index, outcome.next_index + 1
            begun = time.perf_counter_ns()
            status = await connection.send(requests(i))
            outcome.record(status, time.perf_counter_ns() - begun)

    begun = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    outcome.seconds = time.perf_counter() - begun
    return outcome


async def open_loop(
    requests: Callable[[int], bytes],
    connections: list[Connection],
    start: int,
    rate: float,
    count: int,
) -> Outcome:
    """Request k is due at begin + k/rate; it waits for a free connection if none is idle."""
    outcome = Outcome(next_index=start + count)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    running: set[asyncio.Task[None]] = set()

    async def one(connection: Connection, i: int, due_ns: int) -> None:
        try:
            status = await connection.send(requests(i))
            outcome.record(status, time.perf_counter_ns() - due_ns)
        finally:
            idle.put_nowait(connection)

    begun_ns = time.perf_counter_ns()
    for k in range(count):
        due_ns = begun_ns + int(k * 1e9 / rate)
        delay = (due_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        connection = await idle.get()
        outcome.start_delays_ns.append(max(0, time.perf_counter_ns() - due_ns))
        task = asyncio.create_task(one(connection, start + k, due_ns))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    outcome.seconds = (time.perf_counter_ns() - begun_ns) / 1e9
    return outcome
