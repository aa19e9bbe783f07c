"""The quarantine and the fence, called with the least-privilege role's credentials: only a
recovery into the next term moves anything, only the current term's own writes after the fork
move, once; forged arguments are refused and leave the log, the head and the served state as
they were (the attack of issue 9: `shadowline_quarantine_after(2, 2147483647)`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shadowline.adapters.store import EventStore
from shadowline.domain.errors import ConcurrentWriter, Conflict
from shadowline.domain.events import GENESIS, verify_chain
from tests.integration.chained import as_role, chained, login_role, store_at, whole, write_log

pytestmark = pytest.mark.integration

INT_MAX = 2**31 - 1


@pytest.fixture
async def app_store(db_url: str) -> AsyncIterator[EventStore]:
    """The store of a fresh database, reached as a role holding only the application's grants."""
    async with login_role(db_url) as role, store_at(as_role(db_url, role)) as store:
        yield store


@pytest.mark.parametrize(
    ("fork", "new_epoch"),
    [(2, INT_MAX), (2, 1), (2, 3), (0, 0), (-1, 2), (7, 2)],
    ids=["epoch-int-max", "not-newer", "skips-a-term", "epoch-zero", "fork-negative", "past-head"],
)
async def test_the_app_role_cannot_quarantine_a_single_term_log_with_forged_arguments(
    app_store: EventStore, fork: Any, new_epoch: Any
) -> None:
    await write_log(app_store, [1] * 6)
    before = await whole(app_store)

    with pytest.raises(Conflict, match="refused the quarantine"):
        await app_store.quarantine_after(fork, new_epoch)

    assert await whole(app_store) == before
    assert before["positions"] == [1, 2, 3, 4, 5, 6] and before["chain_ok"]


@pytest.mark.parametrize("fork", [0, 2], ids=["genesis", "inside-term-1"])
async def test_the_app_role_cannot_quarantine_events_of_an_earlier_term(
    app_store: EventStore, fork: int
) -> None:
    # Epoch 1 up to 3, then a promotion: 4..6 in epoch 2. The new master of epoch 3 holds
    # positions 1..3 of epoch 1 as well; a recovery never moves them (a fork at 3 may move all
    # of epoch 2: its shadow may have been promoted before it received position 4).
    await write_log(app_store, [1, 1, 1, 2, 2, 2])
    before = await whole(app_store)

    with pytest.raises(Conflict, match="earlier or ended term"):
        await app_store.quarantine_after(fork, 3)

    assert await whole(app_store) == before


async def test_a_genuine_recovery_quarantines_the_current_terms_writes_after_the_fork(
    app_store: EventStore,
) -> None:
    written = await write_log(app_store, [1, 1, 1, 2, 2, 2])

    moved = await app_store.quarantine_after(4, 3)

    head = await app_store.head()
    log = await app_store.read(0, 100)
    assert moved == 2
    assert [q["position"] for q in await app_store.quarantined()] == [5, 6]
    assert [e.position for e in log] == [1, 2, 3, 4] and verify_chain(GENESIS, log) is None
    assert (head.position, head.chain, head.epoch, head.fence_epoch) == (4, written[3].chain, 2, 3)
    assert (await app_store.current())[1] == {
        "subaccount/acme-1": written[0].data,
        "subaccount/acme-2": written[1].data,
        "subaccount/acme-0": written[2].data,
    }
    # The store stays usable: the old term is fenced, the new master's term appends.
    with pytest.raises(ConcurrentWriter):
        await app_store.append(chained(5, [2], written[3].chain), 4)
    await app_store.append(chained(5, [3, 3], written[3].chain), 4)
    assert (await app_store.head()).position == 6


async def test_a_second_quarantine_of_the_same_term_is_refused_and_moves_nothing(
    app_store: EventStore,
) -> None:
    await write_log(app_store, [1, 1, 1, 2, 2, 2])
    assert await app_store.quarantine_after(4, 3) == 2
    after_first = await whole(app_store)

    for fork, new_epoch in ((2, 4), (4, 4), (3, 3), (4, 3)):
        with pytest.raises(Conflict, match="refused the quarantine"):
            await app_store.quarantine_after(fork, new_epoch)

    assert await whole(app_store) == after_first


async def test_an_old_master_that_wrote_nothing_after_the_fork_rejoins_in_the_next_term(
    app_store: EventStore,
) -> None:
    written = await write_log(app_store, [1, 1, 1])

    assert await app_store.quarantine_after(3, 2) == 0

    head = await app_store.head()
    assert (head.position, head.chain, head.fence_epoch) == (3, written[-1].chain, 2)


async def test_a_recovery_of_a_whole_single_term_log_keeps_every_event_in_quarantine(
    app_store: EventStore,
) -> None:
    # The database cannot tell a forged fork answer from a genuine one (it never sees the key):
    # what it guarantees is that even a fork at 0 only moves the term's writes, kept, not dropped.
    written = await write_log(app_store, [1, 1, 1])

    assert await app_store.quarantine_after(0, 2) == 3

    assert [q["id"] for q in await app_store.quarantined()] == [e.id for e in written]
    assert (await app_store.head()).position == 0
    await app_store.append(chained(1, [2], GENESIS), 0)


# -- the fence ---------------------------------------------------------------------------------


@pytest.mark.parametrize("epoch", [INT_MAX, 3], ids=["int-max", "skips-a-term"])
async def test_the_app_role_cannot_fence_the_store_past_the_next_term(
    app_store: EventStore, epoch: Any
) -> None:
    await write_log(app_store, [1, 1])
    before = await whole(app_store)

    with pytest.raises(Conflict, match="more than one term past"):
        await app_store.fence(epoch)

    assert await whole(app_store) == before
    written = await write_log(app_store, [1])
    assert written[0].position == 3


async def test_the_fence_never_goes_down(app_store: EventStore) -> None:
    await write_log(app_store, [1, 1])
    await app_store.fence(2)
    await app_store.fence(1)

    assert (await app_store.head()).fence_epoch == 2
    with pytest.raises(ConcurrentWriter):
        await write_log(app_store, [1])
