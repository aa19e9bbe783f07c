"""A change of role is one transaction of the store (adapters.ha_repo.change_role), run with
the least-privilege role's grants: a promotion fences the old term, moves the relay cursor,
takes the role and appends MasterPromoted, all or nothing; a recovery quarantines and takes the
shadow's role at once. A crash or a refusal in between leaves nothing half done to repair."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.store import EventStore
from shadowline.domain.errors import Conflict
from shadowline.domain.ha import RoleChange
from shadowline.domain.promote import sealed_event
from shadowline.domain.records import Head
from shadowline.domain.roles import Role
from tests.integration.chained import as_role, login_role, write_log

pytestmark = pytest.mark.integration


@pytest.fixture
async def pair(db_url: str) -> AsyncIterator[tuple[EventStore, HaRepository]]:
    """The store and the HA record of a fresh database, as the application's role."""
    async with login_role(db_url) as role:
        engine = create_engine(as_role(db_url, role), pool_size=2)
        store = EventStore(engine)
        try:
            yield store, HaRepository(engine)
        finally:
            await store.close()
            await engine.dispose()


async def _as_shadow(repo: HaRepository) -> None:
    await repo.change_role(
        RoleChange(
            Role.SHADOW,
            frozenset({Role.STANDALONE}),
            ha={"master_instance": "node-a", "master_url": "http://a"},
        )
    )


def _promotion(head: Head, epoch: int, *, at: int | None = None) -> RoleChange:
    position = head.position if at is None else at
    event = sealed_event(
        replace(head, position=position),  # `at`: as if decided at an older head
        epoch=epoch,
        type_="MasterPromoted",
        data={"epoch": epoch, "fork_position": position},
        metadata={"actor": "watchdog-1"},
        now=datetime.now(UTC),
        secret="test-secret",
        cluster="prod",
    )
    return RoleChange(
        Role.MASTER,
        frozenset({Role.SHADOW}),
        epoch=epoch,
        fence=epoch,
        relay_cursor=position,
        ha={"master_instance": None, "master_url": None, "shadow_instance": "node-a"},
        event=event,
    )


async def test_a_promotion_takes_the_role_fences_the_term_and_records_its_event_at_once(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1, 1])
    await _as_shadow(repo)
    head = await store.head()

    assert await repo.change_role(_promotion(head, 2)) == 0

    record, after = await repo.load(), await store.head()
    assert (record.role, record.epoch, record.shadow_instance) == ("master", 2, "node-a")
    assert (after.position, after.epoch, after.fence_epoch) == (4, 2, 2)
    (promoted,) = await store.read(3, 10)
    assert (promoted.type, promoted.epoch) == ("MasterPromoted", 2)
    assert await store.relay_cursor() == 3
    assert (await store.promotion_after(1)) == promoted


async def test_a_promotion_whose_event_does_not_extend_the_head_changes_nothing(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1, 1])
    await _as_shadow(repo)
    head = await store.head()

    with pytest.raises(Conflict, match="no longer at 2"):
        await repo.change_role(_promotion(head, 2, at=2))  # a stale fork: the head is 3

    record, after = await repo.load(), await store.head()
    assert (record.role, record.epoch) == ("shadow", 1)
    assert (after.position, after.fence_epoch) == (3, head.fence_epoch)
    assert await store.relay_cursor() == 0


async def test_a_promotion_of_an_instance_no_longer_a_shadow_changes_nothing(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1])
    head = await store.head()  # still standalone: the compare-and-set on the role refuses

    with pytest.raises(Conflict, match="no longer in role shadow"):
        await repo.change_role(_promotion(head, 2))

    after = await store.head()
    assert (await repo.load()).role == "standalone"
    assert (after.position, after.fence_epoch) == (2, head.fence_epoch)


async def test_a_recovery_quarantines_and_takes_the_shadows_role_in_one_step(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1, 1, 1])
    await repo.change_role(RoleChange(Role.MASTER, frozenset({Role.STANDALONE})))
    rejoin = RoleChange(
        Role.SHADOW,
        frozenset({Role.MASTER}),
        epoch=2,
        quarantine_after=2,
        ha={"master_instance": "node-b", "master_url": "http://b"},
    )

    assert await repo.change_role(rejoin) == 2

    record = await repo.load()
    assert (record.role, record.epoch, record.master_instance) == ("shadow", 2, "node-b")
    assert (await store.head()).position == 2
    assert [q["position"] for q in await store.quarantined()] == [3, 4]


async def test_a_recovery_refused_by_the_role_check_quarantines_nothing(
    pair: tuple[EventStore, HaRepository],
) -> None:
    store, repo = pair
    await write_log(store, [1, 1, 1, 1])  # standalone, not master: the role check refuses
    rejoin = RoleChange(Role.SHADOW, frozenset({Role.MASTER}), epoch=2, quarantine_after=2)

    with pytest.raises(Conflict, match="no longer in role master"):
        await repo.change_role(rejoin)

    assert (await store.head()).position == 4
    assert await store.quarantined() == []
