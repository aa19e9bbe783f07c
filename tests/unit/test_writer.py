"""The single writer on the in-memory store: group commit, per-command decisions, the epoch a
write was accepted in, exclusive jobs in order, and what a failed append leaves behind.

The twin's gate (`InMemoryStore.hold`) keeps one transaction in flight while the test queues
more work behind it, so which commands share a batch is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from shadowline.application.writer import Writer
from shadowline.domain.commands import DeleteItem, PutItem
from shadowline.domain.errors import (
    ConcurrentWriter,
    Divergence,
    Gap,
    NotAcknowledged,
    NotFound,
    NotWritable,
    Unavailable,
    VersionConflict,
)
from shadowline.domain.events import CONFIG_DELETED, GENESIS, Event, verify_chain
from tests.contract.events import chained
from tests.contract.events import put as put_event
from tests.twins import InMemoryStore

META = {"actor": "test", "request_id": "r-1"}


def put(name: str, region: str, expected: int | None = None) -> PutItem:
    return PutItem("subaccount", name, {"region": region}, expected, META)


class Harness:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.epoch = 1
        self.writable = True
        self.batches: list[int] = []
        self.writer = Writer(
            self.store,
            epoch=lambda: self.epoch,
            writable=lambda: self.writable,
            on_batch=lambda n, _: self.batches.append(n),
        )

    async def in_flight(self, command: PutItem) -> asyncio.Task[tuple[Event, bool]]:
        """Submit `command` and return once its append waits at the store's gate."""
        self.store.hold()
        task = asyncio.create_task(self.writer.submit(command))
        await self.store.appending.wait()
        return task

    async def queued(self, *work: Awaitable[Any]) -> list[asyncio.Task[Any]]:
        """Start `work`; each has put itself in the writer's queue when this returns."""
        tasks = [asyncio.ensure_future(w) for w in work]
        # One turn of the loop: each task runs up to its first await, which is after enqueuing.
        await asyncio.sleep(0)
        return tasks

    async def stored(self) -> list[Event]:
        return await self.store.read(0, 1_000)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    await h.writer.load()
    task = asyncio.create_task(h.writer.run())
    yield h
    h.store.release()
    h.writer.close()
    await asyncio.wait_for(task, timeout=5)


async def test_commands_queued_behind_a_transaction_are_committed_together_in_one_batch(
    harness: Harness,
) -> None:
    first = await harness.in_flight(put("acme", "eu10"))
    waiting = await harness.queued(*(harness.writer.submit(put(f"n{i}", "eu10")) for i in range(5)))
    harness.store.release()
    results = [await first, *[await t for t in waiting]]

    assert harness.batches == [1, 5]
    assert [len(b) for b in harness.store.batches] == [1, 5]
    assert [event.position for event, _ in results] == [1, 2, 3, 4, 5, 6]
    stored = await harness.stored()
    assert [e.id for e in stored] == [event.id for event, _ in results]
    assert verify_chain(GENESIS, stored) is None


async def test_a_conflict_for_one_command_never_fails_its_neighbours_in_the_batch(
    harness: Harness,
) -> None:
    await harness.writer.submit(put("acme", "eu10"))
    first = await harness.in_flight(put("other", "us10"))
    tasks = await harness.queued(
        harness.writer.submit(put("acme", "first", expected=1)),
        harness.writer.submit(put("acme", "second", expected=1)),
        harness.writer.submit(DeleteItem("subaccount", "ghost", None, META)),
        harness.writer.submit(put("beta", "jp10")),
    )
    harness.store.release()
    await first
    winner, loser, missing, unrelated = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(winner, tuple) and winner[0].version == 2
    assert isinstance(loser, VersionConflict)
    assert (loser.key, loser.expected, loser.actual) == ("subaccount/acme", 1, 2)
    assert isinstance(missing, NotFound)
    assert isinstance(unrelated, tuple) and unrelated[0].position == 4
    assert harness.batches == [1, 1, 2]
    assert await harness.store.item("subaccount", "acme") == ({"region": "first"}, 2)


async def test_commands_in_one_batch_see_the_versions_left_by_those_before_them(
    harness: Harness,
) -> None:
    await harness.writer.submit(put("acme", "eu10"))
    first = await harness.in_flight(put("other", "us10"))
    tasks = await harness.queued(
        harness.writer.submit(put("acme", "eu20", expected=1)),
        harness.writer.submit(DeleteItem("subaccount", "acme", 2, META)),
        harness.writer.submit(put("acme", "eu30", expected=2)),
        harness.writer.submit(put("acme", "eu40")),
    )
    harness.store.release()
    await first
    updated, deleted, stale, recreated = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(updated, tuple) and updated[0].version == 2
    assert isinstance(deleted, tuple) and (deleted[0].type, deleted[0].version) == (
        CONFIG_DELETED,
        3,
    )
    assert isinstance(stale, VersionConflict) and stale.actual is None
    assert isinstance(recreated, tuple) and (recreated[0].version, recreated[1]) == (4, True)


async def test_a_write_accepted_in_one_epoch_is_refused_if_the_role_changed_before_its_turn(
    harness: Harness,
) -> None:
    await harness.writer.submit(put("acme", "eu10"), epoch=1)
    started, released = asyncio.Event(), asyncio.Event()

    async def rejoin() -> None:
        started.set()
        await released.wait()
        harness.epoch = 2

    job = asyncio.create_task(harness.writer.exclusive(rejoin))
    await started.wait()
    (write,) = await harness.queued(harness.writer.submit(put("acme", "eu20"), epoch=1))
    released.set()
    await job
    with pytest.raises(NotWritable):
        await write
    later, _ = await harness.writer.submit(put("acme", "eu30"), epoch=2)

    assert [(e.position, e.epoch, e.data) for e in await harness.stored()] == [
        (1, 1, {"region": "eu10"}),
        (2, 2, {"region": "eu30"}),
    ]
    assert later.version == 2


async def test_a_write_accepted_while_writable_is_refused_once_the_instance_is_not(
    harness: Harness,
) -> None:
    first = await harness.in_flight(put("acme", "eu10"))
    (write,) = await harness.queued(harness.writer.submit(put("beta", "us10"), epoch=1))
    harness.writable = False
    harness.store.release()
    await first

    with pytest.raises(NotWritable):
        await write
    assert [e.name for e in await harness.stored()] == ["acme"]


async def test_exclusive_jobs_run_after_what_was_queued_before_them_and_before_what_came_after(
    harness: Harness,
) -> None:
    seen: list[int] = []

    async def job() -> int:
        seen.append(harness.writer.position)
        return (await harness.store.head()).position

    first = await harness.in_flight(put("a", "eu10"))
    before_1, before_2, exclusive, after = await harness.queued(
        harness.writer.submit(put("b", "eu10")),
        harness.writer.submit(put("c", "eu10")),
        harness.writer.exclusive(job),
        harness.writer.submit(put("d", "eu10")),
    )
    harness.store.release()
    await asyncio.gather(first, before_1, before_2, after)

    assert await exclusive == 3
    assert seen == [3]
    assert (await after)[0].position == 4
    assert [len(b) for b in harness.store.batches] == [1, 2, 1]
    assert await harness.writer.barrier() == 4


async def test_a_write_whose_client_went_away_before_its_turn_is_not_appended(
    harness: Harness,
) -> None:
    first = await harness.in_flight(put("acme", "eu10"))
    gone, kept = await harness.queued(
        harness.writer.submit(put("gone", "eu10")), harness.writer.submit(put("kept", "eu10"))
    )
    gone.cancel()
    harness.store.release()
    await first

    assert (await kept)[0].position == 2
    assert [e.name for e in await harness.stored()] == ["acme", "kept"]


async def test_an_append_whose_outcome_is_unknown_fails_its_batch_and_the_writer_rereads_the_head(
    harness: Harness,
) -> None:
    harness.store.fail_next_append(Unavailable("connection lost at COMMIT"), after_commit=True)
    with pytest.raises(NotAcknowledged, match="outcome is unknown"):
        await harness.writer.submit(put("acme", "eu10"))
    after, _ = await harness.writer.submit(put("acme", "eu20"))

    assert (after.position, after.version) == (2, 2)
    assert harness.writer.position == 2
    assert verify_chain(GENESIS, await harness.stored()) is None


async def test_a_writer_behind_another_gets_concurrent_writer_once_then_continues_the_log(
    harness: Harness,
) -> None:
    rival = chained(0, GENESIS, [put_event("rival", 1, {"region": "eu10"})])
    await harness.store.append(rival, 0)
    with pytest.raises(ConcurrentWriter):
        await harness.writer.submit(put("acme", "eu10"))
    ours, _ = await harness.writer.submit(put("acme", "eu10"))

    assert ours.position == 2
    assert [e.id for e in await harness.stored()] == [rival[0].id, ours.id]


async def test_replicated_events_are_appended_exactly_as_the_master_wrote_them(
    harness: Harness,
) -> None:
    master = chained(0, GENESIS, [put_event("a", 1, {"r": 1}), put_event("a", 2, {"r": 2})])
    await harness.writer.replicate(master)

    stored = await harness.stored()
    assert stored == master
    assert [e.chain for e in stored] == [e.chain for e in master]
    assert (harness.writer.position, harness.writer.chain) == (2, master[-1].chain)
    after, _ = await harness.writer.submit(put("a", "eu10"))
    assert (after.position, after.version) == (3, 3)


async def test_replicated_events_that_do_not_extend_the_log_exactly_are_refused(
    harness: Harness,
) -> None:
    skipped = chained(1, GENESIS, [put_event("a", 1, {"r": 1})])
    with pytest.raises(Gap):
        await harness.writer.replicate(skipped)
    forked = chained(0, bytes(range(32)), [put_event("a", 1, {"r": 1})])
    with pytest.raises(Divergence):
        await harness.writer.replicate(forked)

    assert await harness.stored() == []
