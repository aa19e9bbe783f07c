"""A write load that follows the master, and the check that no acknowledged write was lost.

A few clients send PUTs of the shared workload over the raw keep-alive HTTP/1.1 client of the
replication benchmark (cheap on a 2-core machine that also runs both instances). A client that
gets a 503 naming a master goes there; on a 503 naming none, or when the instance does not
answer, it tries the other instance, after a short pause. Every acknowledged write is recorded
with what the instance answered (position, version, epoch) and when the answer arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from shadowline_bench.common import KIND, system_mapping
from shadowline_bench.replication_cluster import Node
from shadowline_bench.replication_load import ACKED, Connection, PutRequests

RETRY_PAUSE = 0.02  # after a refusal: the failover time is measured to within about this
TIMEOUT = 5.0  # a request not answered within this counts as a connection failure
PAGE = 20_000


class AnswerConnection(Connection):
    """`Connection.send` reads the body and drops it; an ack's body says where the write is."""

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            reader, writer = await self._open()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            return int(head[9:12]), await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()
            return 0, b""


@dataclass(frozen=True, slots=True)
class Ack:
    index: int  # the workload's write number: system_mapping(index) is the value sent
    name: str
    version: int
    position: int
    epoch: int
    url: str
    sent: float  # monotonic
    received: float

    def describe(self, found: dict[str, Any] | None) -> str:
        there = "nothing"
        if found is not None:
            item = f" {found['name']} v{found['version']}" if found.get("name") else ""
            there = f"{found['type']}{item} epoch {found['epoch']}"
        return (
            f"{self.name} v{self.version} at position {self.position} epoch {self.epoch}, acked "
            f"by {self.url} after {self.received - self.sent:.3f}s; the survivor has {there}"
        )


@dataclass
class FollowingLoad:
    urls: list[str]
    password: str
    clients: int = 4
    acks: list[Ack] = field(default_factory=list)
    refusals: Counter[int] = field(default_factory=Counter)  # status (0: no answer) -> count
    next_index: int = 0

    def __post_init__(self) -> None:
        self._requests = {url: PutRequests(url, "admin", self.password) for url in self.urls}

    async def run(self, start_url: str, stop: asyncio.Event) -> None:
        """Write until `stop` is set, every client starting at `start_url`."""
        await asyncio.gather(*(self._client(start_url, stop) for _ in range(self.clients)))

    def first_ack(self, since: int, newer_than_epoch: int) -> Ack | None:
        return next((a for a in self.acks[since:] if a.epoch > newer_than_epoch), None)

    async def wait_ack(
        self, since: int, newer_than_epoch: int, patience: float, count: int = 1
    ) -> Ack:
        """The first ack past index `since` in an epoch above the given one, once `count` are."""
        deadline = time.monotonic() + patience
        while True:
            found = [a for a in self.acks[since:] if a.epoch > newer_than_epoch]
            if len(found) >= count:
                return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"no {count} writes acknowledged in an epoch above {newer_than_epoch} within "
                    f"{patience:.0f}s (refusals so far: {dict(self.refusals)})"
                )
            await asyncio.sleep(0.01)

    def _other(self, url: str) -> str:
        return next(u for u in self.urls if u != url)

    def _follow(self, url: str, status: int, body: bytes) -> str:
        if status == 503:
            try:
                named = orjson.loads(body).get("master")
            except (orjson.JSONDecodeError, AttributeError):
                named = None
            named = named.rstrip("/") if isinstance(named, str) else None
            if named in self._requests and named != url:
                return named
        return self._other(url)

    async def _client(self, url: str, stop: asyncio.Event) -> None:
        connections = {u: AnswerConnection(r.host, r.port) for u, r in self._requests.items()}
        try:
            while not stop.is_set():
                i, self.next_index = self.next_index, self.next_index + 1
                sent = time.monotonic()
                connection = connections[url]
                try:
                    status, body = await asyncio.wait_for(
                        connection.exchange(self._requests[url](i)), TIMEOUT
                    )
                except TimeoutError:
                    await connection.close()
                    status, body = 0, b""
                if status in ACKED:
                    doc = orjson.loads(body)
                    self.acks.append(
                        Ack(
                            i,
                            doc["name"],
                            doc["version"],
                            doc["position"],
                            doc["epoch"],
                            url,
                            sent,
                            time.monotonic(),
                        )
                    )
                    continue
                self.refusals[status] += 1
                url = self._follow(url, status, body)
                await asyncio.sleep(RETRY_PAUSE)
        finally:
            await asyncio.gather(*(c.close() for c in connections.values()))


async def _events(node: Node, low: int, high: int) -> dict[int, dict[str, Any]]:
    """The node's events at positions low..high, by position, read in pages."""
    found: dict[int, dict[str, Any]] = {}
    after = low - 1
    while after < high:
        limit = min(PAGE, high - after)
        response = await node.http.get(
            "/events", params={"after": after, "limit": limit}, timeout=60
        )
        response.raise_for_status()
        page = [orjson.loads(line) for line in response.content.splitlines()]
        if not page:
            break
        found.update((int(e["position"]), e) for e in page)
        after = int(page[-1]["position"])
    return found


async def lost_acks(node: Node, acks: list[Ack]) -> list[str]:
    """The acknowledged writes that are not in the node's log at their position, as written,
    each described with what the node holds there."""
    if not acks:
        return []
    try:
        log = await _events(node, min(a.position for a in acks), max(a.position for a in acks))
    except httpx.HTTPError as error:
        raise RuntimeError(f"cannot read the events of {node.name}: {error}") from error
    lost = []
    for ack in acks:
        event = log.get(ack.position)
        if (
            event is None
            or (event["kind"], event["name"], event["version"]) != (KIND, ack.name, ack.version)
            or event["data"] != system_mapping(ack.index)[1]
        ):
            lost.append(ack.describe(event))
    return lost
