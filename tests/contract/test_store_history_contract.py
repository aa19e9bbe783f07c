"""The store's contract, part two: state at a position, snapshots, the term rule and fencing,
a shadow's bootstrap (image, install, backfill), the quarantine and the audit's view."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from shadowline.adapters.store import Image
from shadowline.domain import audit
from shadowline.domain.errors import ConcurrentWriter, Conflict, NotFound
from shadowline.domain.events import GENESIS, Event
from shadowline.domain.state import digest, fold
from tests.contract.events import chained, delete, ha, put
from tests.contract.test_store_contract import append
from tests.twins import Store


async def history(store: Store) -> list[Event]:
    return await append(
        store,
        [
            put("a", 1, {"r": 1}),
            put("b", 1, {"r": 2}),
            put("a", 2, {"r": 3}),
            delete("b", 2),
            ha("MasterPromoted", epoch=1),
            put("c", 1, {"r": 4}),
        ],
    )


async def test_state_at_every_position_equals_a_fold_of_the_log_up_to_it(store: Store) -> None:
    events = await history(store)
    await store.save_snapshot(2, fold({}, events[:2]))
    await store.save_snapshot(5, fold({}, events[:5]))

    for position in range(len(events) + 1):
        assert await store.state_at(position) == fold({}, events[:position]), position


async def test_a_snapshot_keeps_the_state_its_digest_and_chain_and_the_first_one_stays(
    store: Store,
) -> None:
    events = await history(store)
    state = fold({}, events[:3])
    await store.save_snapshot(3, state)
    await store.save_snapshot(3, {"subaccount/z": {"r": 0}})  # a second one changes nothing

    snapshot = await store.snapshot_at(3)
    assert snapshot is not None
    assert (snapshot.position, snapshot.state, snapshot.digest) == (3, state, digest(state))
    assert snapshot.chain == events[2].chain
    assert await store.snapshot_at(4) is None
    assert await store.latest_snapshot() == snapshot
    assert await store.latest_snapshot_position() == 3


async def test_a_snapshot_wrong_about_the_log_is_what_state_at_folds_from(store: Store) -> None:
    """The store trusts its snapshots (the audit checks them): state_at starts from the
    nearest one at or before the position."""
    events = await history(store)
    await store.save_snapshot(2, {"subaccount/z": {"r": 0}})

    assert await store.state_at(1) == fold({}, events[:1])
    assert await store.state_at(3) == fold({"subaccount/z": {"r": 0}}, events[2:3])


async def test_an_epoch_below_the_head_or_two_terms_on_is_refused(store: Store) -> None:
    await append(store, [put("a", 1, {"r": 1})], epoch=1)
    await append(store, [ha("MasterPromoted", epoch=2)], epoch=2)
    for epoch in (1, 4):
        with pytest.raises(ConcurrentWriter):
            await append(store, [put("a", 2, {"r": 2})], epoch=epoch)

    head = await store.head()
    assert (head.position, head.epoch) == (2, 2)


async def test_a_fence_refuses_older_epochs_for_good_and_never_jumps_two_terms(
    store: Store,
) -> None:
    await append(store, [put("a", 1, {"r": 1})], epoch=1)
    await store.fence(2)
    with pytest.raises(ConcurrentWriter):
        await append(store, [put("a", 2, {"r": 2})], epoch=1)
    with pytest.raises(Conflict):
        await store.fence(4)
    await store.fence(1)  # never down

    assert (await store.head()).fence_epoch == 2
    await append(store, [put("a", 2, {"r": 2})], epoch=2)
    assert (await store.head()).position == 2


async def test_a_bootstrapped_store_serves_the_image_and_completes_only_with_the_whole_history(
    store: Store,
) -> None:
    source = chained(
        0, GENESIS, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2}), delete("b", 2)], epoch=1
    )
    rows = [
        {"kind": "subaccount", "name": "a", "version": 1, "live": True, "value": {"r": 1},
         "position": 1, "updated_at": source[0].recorded_at},
        {"kind": "subaccount", "name": "b", "version": 2, "live": False, "value": None,
         "position": 3, "updated_at": source[2].recorded_at},
    ]  # fmt: skip
    image = Image(3, source[2].chain, 1, rows, {"subaccount/a": {"r": 1}})
    await store.install(image)

    head = await store.head()
    assert (head.position, head.chain, head.epoch, head.base_position) == (3, image.chain, 1, 3)
    assert await store.current() == (3, {"subaccount/a": {"r": 1}})
    assert (await store.image()).rows == rows
    with pytest.raises(NotFound):
        await store.state_at(2)
    with pytest.raises(ConcurrentWriter):
        await store.install(image)

    await store.backfill(source[:2], 3)
    assert (await store.head()).base_position == 3
    await store.backfill(source[2:], 0)
    assert (await store.head()).base_position == 0
    assert await store.read(0, 100) == source
    assert await store.state_at(2) == fold({}, source[:2])


async def test_a_store_that_holds_events_cannot_be_bootstrapped(store: Store) -> None:
    events = await history(store)
    image = Image(len(events), events[-1].chain, 1, [], {})
    with pytest.raises(ConcurrentWriter):
        await store.install(image)
    assert await store.read(0, 100) == events


async def test_the_image_is_the_head_and_every_item_row_tombstones_included(store: Store) -> None:
    events = await history(store)
    image = await store.image()

    assert (image.position, image.chain, image.epoch) == (6, events[-1].chain, 1)
    assert [(r["name"], r["version"], r["live"], r["position"]) for r in image.rows] == [
        ("a", 2, True, 3),
        ("b", 2, False, 4),
        ("c", 1, True, 6),
    ]
    assert image.state == fold({}, events)


async def test_a_quarantine_moves_the_current_terms_events_after_the_fork_once(
    store: Store,
) -> None:
    kept = await append(store, [put("a", 1, {"r": 1}), put("b", 1, {"r": 2})])
    await store.save_snapshot(2, fold({}, kept))
    lost = await append(store, [put("a", 2, {"r": 3}), delete("b", 2)])
    await store.save_snapshot(4, fold({}, kept + lost))
    await store.set_relay_cursor(4)
    with pytest.raises(Conflict):
        await store.quarantine_after(2, 3)  # not the next term

    assert await store.quarantine_after(2, 2) == 2
    head = await store.head()
    assert (head.position, head.chain, head.epoch, head.fence_epoch) == (2, kept[-1].chain, 1, 2)
    assert await store.read(0, 100) == kept
    assert await store.current() == (2, fold({}, kept))
    assert await store.latest_snapshot_position() == 2
    assert await store.relay_cursor() == 2
    moved = await store.quarantined()
    assert [(r["position"], r["id"], r["fork_position"], r["new_epoch"]) for r in moved] == [
        (3, lost[0].id, 2, 2),
        (4, lost[1].id, 2, 2),
    ]
    with pytest.raises(Conflict):
        await store.quarantine_after(1, 3)  # the term was cut: it is fenced


async def test_the_audit_view_shows_the_log_the_served_rows_and_the_snapshots_marks(
    store: Store,
) -> None:
    events = await history(store)
    state = fold({}, events[:4])
    await store.save_snapshot(4, state)

    async with store.consistent() as view:
        assert (await view.head()).position == 6
        assert await view.events(2, 2) == events[2:4]
        served = await view.served()
        marks = await view.marks()
        assert await view.snapshot_state(4) == state
        assert await view.snapshot_state(5) == {}

    assert served == {
        "subaccount/a": audit.Row(2, True, {"r": 3}, 3),
        "subaccount/b": audit.Row(2, False, None, 4),
        "subaccount/c": audit.Row(1, True, {"r": 4}, 6),
    }
    assert marks == {4: audit.Mark(digest(state), events[3].chain)}


async def test_a_backfill_into_a_store_not_bootstrapped_is_refused(store: Store) -> None:
    events = chained(0, GENESIS, [put("a", 1, {"r": 1})])
    # The adapter lets the database's IntegrityError out untranslated; the twin says
    # ConcurrentWriter, as the adapter's other refusals do.
    with pytest.raises((ConcurrentWriter, IntegrityError), match="not bootstrapped"):
        await store.backfill(events, 0)

    assert await store.read(0, 100) == []
    assert (await store.head()).position == 0
