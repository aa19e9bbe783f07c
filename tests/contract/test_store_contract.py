"""The store's contract, part one: appends, the compare-and-set, gap-freedom, versions, reads.

Every test runs against tests.twins.InMemoryStore and against the real EventStore (see
conftest.py); what one store does and the other does not is a bug in the twin or the adapter.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shadowline.adapters.store import EventFilter
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import ConcurrentWriter
from shadowline.domain.events import GENESIS, Event
from shadowline.domain.state import fold
from tests.contract.events import START, chained, delete, ha, put
from tests.twins import Store


async def append(store: Store, specs: list[dict[str, object]], epoch: int = 1) -> list[Event]:
    head = await store.head()
    batch = chained(head.position, head.chain, specs, epoch)
    await store.append(batch, head.position)
    return batch


def chains(events: list[Event]) -> list[bytes]:
    return [e.chain for e in events]


async def test_an_empty_store_stands_at_genesis_and_holds_nothing(store: Store) -> None:
    head = await store.head()
    assert (head.position, head.chain, head.recorded_at) == (0, GENESIS, None)
    assert (head.epoch, head.base_position, head.fence_epoch) == (0, 0, 0)
    assert await store.read(0, 100) == []
    assert await store.current() == (0, {})
    assert await store.versions() == {}
    assert await store.chain_at(0) == GENESIS
    assert await store.chain_at(1) is None
    assert await store.head_signed() is None
    assert await store.latest_snapshot() is None
    assert await store.latest_snapshot_position() == 0


async def test_batches_are_read_back_in_position_order_exactly_as_appended(store: Store) -> None:
    first = await append(store, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2}), ha("Noted", n=1)])
    second = await append(store, [put("a", 2, {"r": 3}), delete("b", 2)])
    everything = first + second

    stored = await store.read(0, 100)
    assert stored == everything
    assert chains(stored) == chains(everything)
    assert [e.position for e in await store.read(2, 2)] == [3, 4]
    assert await store.read(5, 100) == []
    head = await store.head()
    assert (head.position, head.chain, head.epoch) == (5, second[-1].chain, 1)
    assert head.recorded_at == second[-1].recorded_at
    assert await store.chains([1, 4, 9]) == {1: first[0].chain, 4: second[0].chain}
    assert await store.chain_at(3) == first[2].chain


async def test_an_append_at_a_stale_head_raises_concurrent_writer_and_changes_nothing(
    store: Store,
) -> None:
    first = await append(store, [put("a", 1, {"r": 1})])
    rival = chained(0, GENESIS, [put("b", 1, {"r": 2})])
    with pytest.raises(ConcurrentWriter):
        await store.append(rival, 0)
    ahead = chained(1, first[0].chain, [put("b", 1, {"r": 2})])
    with pytest.raises(ConcurrentWriter):
        await store.append(ahead, 2)

    assert await store.read(0, 100) == first
    assert (await store.head()).position == 1
    assert await store.versions() == {("subaccount", "a"): ItemVersion(1, True)}


async def test_a_batch_whose_positions_leave_a_gap_is_refused_whole(store: Store) -> None:
    batch = chained(0, GENESIS, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2})])
    gapped = [batch[0], replace(batch[1], position=3)]
    with pytest.raises(ConcurrentWriter):
        await store.append(gapped, 0)
    late = chained(1, GENESIS, [put("a", 1, {"r": 1})])
    with pytest.raises(ConcurrentWriter):
        await store.append(late, 0)

    assert await store.read(0, 100) == []
    assert (await store.head()).position == 0
    await store.append(batch, 0)
    assert [e.position for e in await store.read(0, 100)] == [1, 2]


async def test_an_event_id_or_command_id_already_in_the_log_is_refused(store: Store) -> None:
    (first,) = await append(store, [put("a", 1, {"r": 1}, command_id="c-1")])
    again = chained(1, first.chain, [put("b", 1, {"r": 2})])
    with pytest.raises(ConcurrentWriter):
        await store.append([replace(again[0], id=first.id)], 1)
    twice = chained(1, first.chain, [put("b", 1, {"r": 2}, command_id="c-1")])
    with pytest.raises(ConcurrentWriter):
        await store.append(twice, 1)

    assert await store.read(0, 100) == [first]


async def test_versions_and_items_follow_puts_and_deletes_and_tombstones_keep_their_version(
    store: Store,
) -> None:
    await append(store, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2}), put("a", 2, {"r": 3})])
    await append(store, [delete("b", 2), ha("MasterPromoted", epoch=1)])

    assert await store.versions() == {
        ("subaccount", "a"): ItemVersion(2, True),
        ("subaccount", "b"): ItemVersion(2, False),
    }
    assert await store.item("subaccount", "a") == ({"r": 3}, 2)
    assert await store.item("subaccount", "b") is None
    assert await store.item("subaccount", "c") is None
    assert await store.current() == (5, {"subaccount/a": {"r": 3}})


async def test_reads_filter_by_kind_name_actor_time_and_type_and_stop_at_the_limit(
    store: Store,
) -> None:
    events = await append(
        store,
        [
            put("a", 1, {"r": 1}),
            put("b", 1, {"r": 2}, actor="ada"),
            ha("MasterPromoted", epoch=1),
            put("a", 2, {"r": 3}, actor="ada"),
            delete("a", 3),
        ],
    )

    async def positions(where: EventFilter, after: int = 0, limit: int = 100) -> list[int]:
        return [e.position for e in await store.read(after, limit, where)]

    assert await positions(EventFilter(name="a")) == [1, 4, 5]
    assert await positions(EventFilter(kind="subaccount"), after=1, limit=2) == [2, 4]
    assert await positions(EventFilter(actor="ada")) == [2, 4]
    assert await positions(EventFilter(types=("MasterPromoted", "ConfigDeleted"))) == [3, 5]
    since, until = events[1].recorded_at, events[3].recorded_at
    assert await positions(EventFilter(since=since, until=until)) == [2, 3, 4]
    assert await positions(EventFilter(name="a", actor="ada")) == [4]


async def test_the_position_at_a_moment_is_the_last_recorded_at_or_before_it(store: Store) -> None:
    events = await append(store, [put("a", 1, {"r": 1}), put("a", 2, {"r": 2})])
    micro = timedelta(microseconds=1)

    assert await store.position_at(START) == 0
    assert await store.position_at(events[0].recorded_at - micro) == 0
    assert await store.position_at(events[0].recorded_at) == 1
    assert await store.position_at(events[1].recorded_at - micro) == 1
    assert await store.position_at(events[1].recorded_at + timedelta(days=1)) == 2


async def test_values_are_stored_as_json_so_changing_an_appended_value_changes_nothing(
    store: Store,
) -> None:
    regions = ["eu10"]
    (event,) = await append(store, [put("a", 1, {"regions": regions, "limits": {"cpu": 2}})])
    regions.append("us10")
    event.metadata["actor"] = "mallory"

    (stored,) = await store.read(0, 1)
    assert stored.data == {"regions": ["eu10"], "limits": {"cpu": 2}}
    assert stored.metadata["actor"] == "test"
    assert await store.item("subaccount", "a") == ({"regions": ["eu10"], "limits": {"cpu": 2}}, 1)


async def test_the_head_says_whether_its_event_is_signed(store: Store) -> None:
    unsigned = await append(store, [put("a", 1, {"r": 1})])
    assert await store.head_signed() is False
    signed = chained(1, unsigned[0].chain, [put("a", 2, {"r": 2})], signed=True)
    await store.append(signed, 1)

    assert await store.head_signed() is True
    (stored,) = await store.read(1, 1)
    assert stored.signature == signed[0].signature


async def test_the_relay_cursor_moves_only_forward_unless_forced(store: Store) -> None:
    assert await store.relay_cursor() == 0
    await store.set_relay_cursor(5)
    await store.set_relay_cursor(3)
    assert await store.relay_cursor() == 5
    await store.set_relay_cursor(2, force=True)
    assert await store.relay_cursor() == 2


async def test_the_promotion_after_an_epoch_is_the_first_master_promoted_of_a_later_one(
    store: Store,
) -> None:
    await append(store, [ha("MasterPromoted", epoch=1), put("a", 1, {"r": 1})])
    (promoted,) = await append(store, [ha("MasterPromoted", epoch=2)], epoch=2)
    await append(store, [ha("MasterPromoted", epoch=3)], epoch=3)

    assert await store.promotion_after(1) == promoted
    assert await store.promotion_after(3) is None


async def test_state_now_equals_a_fold_of_the_whole_log(store: Store) -> None:
    await append(store, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2}), delete("a", 2)])
    position, state = await store.current()

    assert (position, state) == (3, fold({}, await store.read(0, 100)))
