"""The event store and its single writer against the real PostgreSQL.

Order, gap-freedom, optimistic concurrency, snapshots and "as of" are asserted on what the
database holds, read back through the store; nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowline.adapters.db import create_engine
from shadowline.adapters.store import EventStore
from shadowline.application.writer import Writer
from shadowline.bootstrap import Instance
from shadowline.domain.commands import DeleteItem, PutItem
from shadowline.domain.errors import ConcurrentWriter, NotFound, NotWritable, VersionConflict
from shadowline.domain.events import CONFIG_DELETED, GENESIS, Event, verify_chain
from shadowline.domain.state import digest, fold
from tests.conftest import started

pytestmark = pytest.mark.integration

META = {"actor": "test", "request_id": "r-1"}
QUIET = {"snapshot_interval": 1_000_000}  # no background snapshots: the test takes its own


def sub(region: str, subaccount_id: str = "sa-1") -> dict[str, str]:
    return {"region": region, "subaccount_id": subaccount_id}


def put(name: str, region: str, expected: int | None = None) -> PutItem:
    return PutItem("subaccount", name, sub(region), expected, META)


async def read_all(store: EventStore) -> list[Event]:
    return await store.read(0, 1_000_000)


async def wait_past(writer: Writer, position: int) -> None:
    async with writer.committed:
        await writer.committed.wait_for(lambda: writer.position > position)


def assert_gap_free_and_chained(events: list[Event], count: int) -> None:
    assert [e.position for e in events] == list(range(1, count + 1))
    assert len({e.id for e in events}) == count
    assert verify_chain(GENESIS, events) is None


def assert_versions_count_up_per_item(events: list[Event]) -> None:
    versions: dict[str, list[int]] = {}
    for e in events:
        versions.setdefault(e.key, []).append(e.version or 0)
    for key, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), key


def assert_acknowledged_events_are_stored(acknowledged: list[Event], stored: list[Event]) -> None:
    by_position = {e.position: e for e in stored}
    assert len({e.position for e in acknowledged}) == len(acknowledged)
    for event in acknowledged:
        assert by_position[event.position] == event
        assert by_position[event.position].chain == event.chain


@asynccontextmanager
async def own_writer(
    url: str, on_batch: Callable[[int, float], None] | None = None, epoch: list[int] | None = None
) -> AsyncIterator[tuple[EventStore, Writer]]:
    """A writer on an engine of its own, as a second process would have."""
    epoch = epoch or [1]
    engine = create_engine(url, pool_size=2)
    store = EventStore(engine)
    writer = Writer(store, epoch=lambda: epoch[0], on_batch=on_batch)
    await writer.load()
    task = asyncio.create_task(writer.run())
    try:
        yield store, writer
    finally:
        writer.close()
        await asyncio.wait_for(task, timeout=30)
        await store.close()
        await engine.dispose()


# -- order under concurrency -------------------------------------------------------------------


async def test_positions_stay_gap_free_in_commit_order_under_32_concurrent_appenders(
    db_url: str,
) -> None:
    appenders, each = 32, 100
    total = appenders * each
    async with started(db_url, **QUIET) as inst:
        store, writer = inst.store, inst.writer
        tailed: list[Event] = []

        async def append(task: int) -> list[Event]:
            acknowledged = []
            for i in range(each):
                name = f"own-{task}" if i % 2 else f"shared-{i % 5}"
                event, _ = await writer.submit(put(name, f"t{task}-{i}"))
                acknowledged.append(event)
            return acknowledged

        async def tail() -> None:
            last = 0
            while last < total:
                batch = await store.read(after=last, limit=250)
                if not batch:
                    await wait_past(writer, last)
                    continue
                # a reader tailing `position > last` must never see last+2 before last+1
                assert [e.position for e in batch] == list(range(last + 1, last + 1 + len(batch)))
                tailed.extend(batch)
                last = batch[-1].position

        tailer = asyncio.create_task(tail())
        results = await asyncio.gather(*(append(t) for t in range(appenders)))
        await asyncio.wait_for(tailer, timeout=60)

        stored = await read_all(store)
        head = await store.head()
        position, state = await store.current()

    assert_gap_free_and_chained(stored, total)
    assert [e.id for e in tailed] == [e.id for e in stored]
    acknowledged = [e for events in results for e in events]
    assert len(acknowledged) == total
    assert_acknowledged_events_are_stored(acknowledged, stored)
    for events in results:  # each appender waited for its ack: its own events are in order
        assert [e.position for e in events] == sorted(e.position for e in events)
    assert_versions_count_up_per_item(stored)
    assert (head.position, head.chain) == (total, stored[-1].chain)
    assert (position, state) == (total, fold({}, stored))


async def test_a_writer_with_a_stale_head_fails_with_concurrent_writer_and_never_forks_the_log(
    db_url: str,
) -> None:
    async with own_writer(db_url) as (store, first), own_writer(db_url) as (_, second):
        one, _ = await first.submit(put("acme", "eu10"))
        with pytest.raises(ConcurrentWriter):
            await second.submit(put("beta", "us10"))
        # The failed writer re-read the head, so it continues the log; now the first is stale.
        two, _ = await second.submit(put("beta", "us10"))
        with pytest.raises(ConcurrentWriter):
            await first.submit(put("gamma", "jp10"))
        three, _ = await first.submit(put("acme", "eu20"))
        stored = await read_all(store)

    assert (one.position, two.position, three.position) == (1, 2, 3)
    assert_gap_free_and_chained(stored, 3)
    assert [e.id for e in stored] == [one.id, two.id, three.id]
    assert three.version == 2


async def test_two_writers_racing_on_one_database_leave_one_log_of_exactly_the_acknowledged_events(
    db_url: str,
) -> None:
    async def hammer(writer: Writer, tag: str, count: int) -> tuple[list[Event], int]:
        acknowledged, refused = [], 0
        for i in range(count):
            name = "shared" if i % 3 == 0 else f"{tag}-{i % 2}"
            try:
                event, _ = await writer.submit(put(name, f"{tag}-{i}"))
                acknowledged.append(event)
            except ConcurrentWriter:
                refused += 1
        return acknowledged, refused

    tasks, each = 4, 25
    async with own_writer(db_url) as (store, a), own_writer(db_url) as (_, b):
        outcomes = await asyncio.gather(
            *(
                hammer(w, f"{label}{k}", each)
                for w, label in ((a, "a"), (b, "b"))
                for k in range(tasks)
            )
        )
        stored = await read_all(store)
        head = await store.head()
        position, state = await store.current()

    acknowledged = [e for events, _ in outcomes for e in events]
    refused = sum(r for _, r in outcomes)
    assert len(acknowledged) + refused == 2 * tasks * each
    assert len(acknowledged) > 0
    assert_gap_free_and_chained(stored, len(acknowledged))
    assert {e.id for e in stored} == {e.id for e in acknowledged}
    assert_acknowledged_events_are_stored(acknowledged, stored)
    assert_versions_count_up_per_item(stored)
    assert (head.position, head.chain) == (len(stored), stored[-1].chain)
    assert (position, state) == (len(stored), fold({}, stored))


async def test_a_write_accepted_in_one_epoch_is_refused_if_the_role_changed_before_its_turn(
    db_url: str,
) -> None:
    """A master that rejoins as shadow while a client's write waits in the queue must not append
    that write on top of the new master's history (nor acknowledge it)."""
    epoch = [1]
    async with own_writer(db_url, epoch=epoch) as (store, writer):
        await writer.submit(put("acme", "eu10"), epoch=1)
        released = asyncio.Event()

        async def rejoin() -> None:  # the role change, run by the writer before the write
            await released.wait()
            epoch[0] = 2

        job = asyncio.create_task(writer.exclusive(rejoin))
        await asyncio.sleep(0)
        write = asyncio.create_task(writer.submit(put("acme", "eu20"), epoch=1))
        await asyncio.sleep(0.05)
        released.set()
        await job
        with pytest.raises(NotWritable):
            await write
        # Written in the new epoch, the next one is appended under it.
        later, _ = await writer.submit(put("acme", "eu30"), epoch=2)
        stored = await read_all(store)

    assert [(e.position, e.epoch, e.data) for e in stored] == [
        (1, 1, sub("eu10")),
        (2, 2, sub("eu30")),
    ]
    assert later.version == 2


# -- optimistic concurrency --------------------------------------------------------------------


async def test_two_commands_with_the_same_expected_version_in_one_batch_let_exactly_one_win(
    db_url: str,
) -> None:
    batches: list[int] = []
    async with own_writer(db_url, on_batch=lambda n, _: batches.append(n)) as (store, writer):
        await writer.submit(put("acme", "eu10"))
        results = await asyncio.gather(
            writer.submit(put("acme", "first", expected=1)),
            writer.submit(put("acme", "second", expected=1)),
            writer.submit(put("other", "us10")),
            return_exceptions=True,
        )
        stored = await read_all(store)
        item = await store.item("subaccount", "acme")

    assert batches == [1, 2]  # the three commands were decided together, two were appended
    outcomes = results[:2]
    wins = [r for r in outcomes if isinstance(r, tuple)]
    conflicts = [r for r in outcomes if isinstance(r, VersionConflict)]
    assert len(wins) == 1 and len(conflicts) == 1
    (winner, created), conflict = wins[0], conflicts[0]
    assert (winner.version, created) == (2, False)
    assert (conflict.key, conflict.expected, conflict.actual) == ("subaccount/acme", 1, 2)
    assert item == (winner.data, 2)
    unrelated = results[2]
    assert isinstance(unrelated, tuple)
    assert (unrelated[0].key, unrelated[0].version, unrelated[1]) == ("subaccount/other", 1, True)
    assert_gap_free_and_chained(stored, 3)
    assert [e.id for e in stored[1:]] == [winner.id, unrelated[0].id]


async def test_commands_in_one_batch_see_the_versions_left_by_the_commands_before_them(
    db_url: str,
) -> None:
    async with own_writer(db_url) as (store, writer):
        await writer.submit(put("acme", "eu10"))
        results = await asyncio.gather(
            writer.submit(put("acme", "eu20", expected=1)),
            writer.submit(DeleteItem("subaccount", "acme", 2, META)),
            writer.submit(DeleteItem("subaccount", "acme", None, META)),
            writer.submit(put("acme", "eu30", expected=2)),
            writer.submit(put("acme", "eu40")),
            return_exceptions=True,
        )
        stored = await read_all(store)
        item = await store.item("subaccount", "acme")

    updated, deleted, missing, stale, recreated = results
    assert isinstance(updated, tuple) and updated[0].version == 2
    assert isinstance(deleted, tuple) and (deleted[0].type, deleted[0].version) == (
        CONFIG_DELETED,
        3,
    )
    assert isinstance(missing, NotFound)
    assert isinstance(stale, VersionConflict) and stale.actual is None
    assert isinstance(recreated, tuple) and (recreated[0].version, recreated[1]) == (4, True)
    assert item == (sub("eu40"), 4)
    assert_gap_free_and_chained(stored, 4)
    assert_versions_count_up_per_item(stored)


# -- snapshots ---------------------------------------------------------------------------------


@pytest.fixture
async def quiet_instance(db_url: str) -> AsyncIterator[Instance]:
    async with started(db_url, **QUIET) as inst:
        yield inst


_examples = itertools.count()
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "delete"]),
        st.sampled_from(["a", "b", "c"]),
        st.text(alphabet="abcxyz-é中", min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, cuts=st.lists(st.integers(min_value=1, max_value=12), max_size=3, unique=True))
async def test_state_at_any_position_from_the_nearest_snapshot_equals_a_full_replay(
    quiet_instance: Instance, steps: Any, cuts: Any
) -> None:
    inst = quiet_instance
    prefix = f"h{next(_examples)}-"  # the database lives across examples: names do not
    start = inst.writer.position
    model: dict[str, dict[str, str]] = {}
    expected: dict[int, dict[str, dict[str, str]]] = {start: {}}
    for op, name, region in steps:
        key = f"subaccount/{prefix}{name}"
        if op == "put":
            result = await inst.service.put("subaccount", prefix + name, sub(region), None, META)
            model[key] = sub(region)
        elif key in model:
            result = await inst.service.delete("subaccount", prefix + name, None, META)
            del model[key]
        else:
            with pytest.raises(NotFound):
                await inst.service.delete("subaccount", prefix + name, None, META)
            continue
        assert result.position is not None
        expected[result.position] = dict(model)
    positions = sorted(expected)
    assert positions == list(range(start, inst.writer.position + 1))

    # Snapshots at some positions of this example, taken in any order, after the fact.
    for cut in cuts:
        if start + cut in expected:
            await inst.snapshotter.take(start + cut)

    stored = await read_all(inst.store)
    for p in positions:
        state = await inst.store.state_at(p)
        assert state == fold({}, stored[:p])
        assert {k: v for k, v in state.items() if k.startswith(f"subaccount/{prefix}")} == (
            expected[p]
        )
    snapshot = await inst.store.latest_snapshot()
    if snapshot is not None:
        assert snapshot.digest == digest(snapshot.state)
        assert snapshot.state == fold({}, stored[: snapshot.position])


# -- as of -------------------------------------------------------------------------------------


async def test_as_of_resolves_to_the_last_position_recorded_at_or_before_the_moment(
    db_url: str,
) -> None:
    async with started(db_url, **QUIET) as inst:
        service = inst.service
        for i in range(4):
            await service.put("subaccount", f"acme-{i}", sub(f"r{i}"), None, META)
        stored = await read_all(inst.store)
        micro = timedelta(microseconds=1)

        def last_at_or_before(moment: datetime) -> int:
            return max((e.position for e in stored if e.recorded_at <= moment), default=0)

        assert await service.resolve(as_of=stored[0].recorded_at - micro) == 0
        for e in stored:
            for moment in (e.recorded_at - micro, e.recorded_at, e.recorded_at + micro):
                assert await service.resolve(as_of=moment) == last_at_or_before(moment)
        elsewhere = stored[1].recorded_at.astimezone(timezone(timedelta(hours=-7)))
        assert await service.resolve(as_of=elsewhere) == last_at_or_before(stored[1].recorded_at)
        assert await service.resolve(as_of=stored[-1].recorded_at + timedelta(days=1)) == 4

        position, state = await service.state(as_of=stored[1].recorded_at)
        assert position == last_at_or_before(stored[1].recorded_at)
        assert state == fold({}, stored[:position])
        with pytest.raises(NotFound):
            await service.resolve(at=5)
