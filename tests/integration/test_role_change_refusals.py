"""A role change the store's guards refuse says which step they refused, in the words the
store uses for that step on its own (migration 0006's functions give the reason): a recovery
whose quarantine is refused, a promotion whose fence is refused; nothing is changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.store import EventStore
from shadowline.domain.errors import Conflict
from shadowline.domain.ha import RoleChange
from shadowline.domain.roles import Role
from tests.integration.chained import as_role, login_role, write_log

pytestmark = pytest.mark.integration


@pytest.fixture
async def pair(db_url: str) -> AsyncIterator[tuple[EventStore, HaRepository]]:
    async with login_role(db_url) as role:
        engine = create_engine(as_role(db_url, role), pool_size=2)
        store = EventStore(engine)
        try:
            yield store, HaRepository(engine)
        finally:
            await store.close()
            await engine.dispose()


async def test_a_recovery_whose_quarantine_the_store_refuses_says_so_and_changes_nothing(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1, 1, 1])
    await repo.change_role(RoleChange(Role.MASTER, frozenset({Role.STANDALONE})))
    rejoin = RoleChange(  # not the next term: the attack of issue 9
        Role.SHADOW, frozenset({Role.MASTER}), epoch=2147483647, quarantine_after=2
    )

    with pytest.raises(Conflict, match=r"^the store refused the quarantine: "):
        await repo.change_role(rejoin)

    assert (await repo.load()).role == "master"
    assert (await store.head()).position == 4
    assert await store.quarantined() == []


async def test_a_promotion_whose_fence_the_store_refuses_says_so_and_changes_nothing(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1])
    await repo.change_role(
        RoleChange(Role.SHADOW, frozenset({Role.STANDALONE}), ha={"master_instance": "node-a"})
    )
    skipping = RoleChange(Role.MASTER, frozenset({Role.SHADOW}), epoch=5, fence=5)

    with pytest.raises(Conflict, match=r"^the store refused the fence: "):
        await repo.change_role(skipping)

    record, head = await repo.load(), await store.head()
    assert (record.role, record.epoch) == ("shadow", 1)
    assert head.fence_epoch < 5
