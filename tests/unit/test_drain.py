"""A promotion drains what the shadow's queue still holds from the old master before it fences
the old epoch (application.replica.Replicator.drain): it returns only once nothing is left in
the queue, in hand, or being applied; and a queue nobody consumes holds nothing to wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from shadowline.adapters.resources import load_config_schemas
from shadowline.application.ports.broker import Delivered, ReplicationFeed
from shadowline.application.replica import Replicator
from shadowline.application.writer import Writer
from shadowline.domain import trust
from shadowline.domain.events import GENESIS, Event
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.replication import ReplicationQueue
from tests.contract.events import chained, put
from tests.twins import InMemoryStore

SECRET = "test-secret"
CLUSTER = "prod"


def signed_events(count: int) -> list[Event]:
    specs = [put(f"sa-{n}", 1, {"region": "eu10", "subaccount_id": f"a{n}"}) for n in range(count)]
    return [
        replace(e, signature=trust.event_signature(SECRET, CLUSTER, e))
        for e in chained(0, GENESIS, specs)
    ]


class Settled:
    """A delivery's handle that remembers how it was settled."""

    origin = "config.subaccount.put"

    def __init__(self) -> None:
        self.outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = "acked"

    async def drop(self) -> None:
        self.outcome = "dropped"

    async def dead_letter(self, reason: str) -> None:
        self.outcome = f"dead-lettered: {reason}"

    async def hand_back(self) -> None:
        self.outcome = "handed back"


class HeldFeed:
    """A feed whose first count of pending messages is a broker round trip that the test
    holds open; the count it then gives is what the broker says at that moment."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[Delivered]] = asyncio.Queue()
        self.in_queue = 0
        self.asked = 0
        self.asking = asyncio.Event()
        self.answer = asyncio.Event()

    async def next_batch(self, limit: int, quiet_after: float) -> list[Delivered] | None:
        try:
            return await asyncio.wait_for(self.batches.get(), quiet_after)
        except TimeoutError:
            return None

    async def pending(self) -> int:
        self.asked += 1
        self.asking.set()
        if self.asked == 1:
            await self.answer.wait()
        return self.in_queue + self.batches.qsize()


class NoPeer:
    async def call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the master is not asked here ({method} {path})")

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        raise AssertionError(f"the master is not asked here ({path})")

    async def close(self) -> None:
        pass


@dataclass
class Shadow:
    store: InMemoryStore
    writer: Writer
    feed: HeldFeed
    replica: Replicator


def replicator(writer: Writer, store: InMemoryStore, feed: ReplicationFeed) -> Replicator:
    return Replicator(
        writer=writer,
        store=store,
        peer=NoPeer(),
        alert=lambda *_: None,
        secret=SECRET,
        cluster=CLUSTER,
        catalog=Catalog(load_config_schemas()),
        feed=feed,
        catch_up_after=0.05,
    )


@pytest.fixture
async def shadow() -> AsyncIterator[Shadow]:
    store, feed = InMemoryStore(), HeldFeed()
    writer = Writer(store, epoch=lambda: 1)
    await writer.load()
    replica = replicator(writer, store, feed)
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(replica.run_applier())]
    yield Shadow(store, writer, feed, replica)
    store.release()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_drain_waits_for_a_batch_the_applier_took_while_the_drain_asked_the_broker(
    shadow: Shadow,
) -> None:
    shadow.feed.in_queue = 1  # the old master's last event, still in the queue
    drain = asyncio.create_task(shadow.replica.drain(within=10))
    await asyncio.wait_for(shadow.feed.asking.wait(), 5)
    shadow.feed.asking.clear()
    # While the broker is asked: the applier takes that event and applies it (held in flight).
    shadow.store.hold()
    settle = Settled()
    shadow.feed.in_queue = 0
    shadow.feed.batches.put_nowait([(signed_events(1)[0], settle)])
    await asyncio.wait_for(shadow.store.appending.wait(), 5)
    shadow.feed.answer.set()  # the broker: nothing left in the queue

    await asyncio.wait_for(shadow.feed.asking.wait(), 5)  # drain asked again: it went on
    assert not drain.done(), "the drain returned while a batch was being applied"
    shadow.store.release()
    await asyncio.wait_for(drain, 5)
    assert shadow.writer.position == 1
    assert settle.outcome == "acked"


# -- the AMQP feed -------------------------------------------------------------------------------


@dataclass
class Declared:
    message_count: int


class Queue:
    """An AMQP queue as aio-pika shows it, holding `ready` messages nobody took yet."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.consumers: list[str] = []

    async def declare(self, **options: Any) -> Declared:  # aio-pika: timeout=
        return Declared(self.ready)

    async def consume(self, callback: Any, no_ack: bool = False) -> str:
        self.consumers.append("ctag-1")
        return "ctag-1"

    async def cancel(self, tag: str) -> None:
        self.consumers.remove(tag)


class Broker:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def replication_queue(self, instance: str) -> Queue:
        return self.queue


async def test_a_declared_queue_that_is_not_consumed_holds_nothing_to_drain() -> None:
    queue = Queue(ready=5)  # events of a master that went down before this shadow consumed
    feed = ReplicationQueue(
        Broker(queue),  # type: ignore[arg-type]  # the one call a feed makes of its BrokerLink
        "node-b",
        alert=lambda *_: None,
        rejected=lambda *_: None,
    )
    await feed.declare()
    assert await feed.pending() == 0

    await feed.consume()
    assert await feed.pending() == 5
    await feed.stop()
    assert queue.consumers == []
    assert await feed.pending() == 0


async def test_a_shadow_that_never_consumed_its_queue_is_promoted_without_waiting_the_delay() -> (
    None
):
    feed = ReplicationQueue(
        Broker(Queue(ready=5)),  # type: ignore[arg-type]
        "node-b",
        alert=lambda *_: None,
        rejected=lambda *_: None,
    )
    await feed.declare()
    store = InMemoryStore()
    replica = replicator(Writer(store, epoch=lambda: 1), store, feed)
    await asyncio.wait_for(replica.drain(within=60), 5)
