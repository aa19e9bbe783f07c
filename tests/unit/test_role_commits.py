"""A role change committed inside the writer (application.role_commit) leaves the writer's
memory as the store holds it, reading again only what changed: a promotion's or HA enable's
event becomes the head without a scan of every item's version (it runs in the failover's
write pause); a recovery's quarantine rewinds items, and an outcome not known may have landed,
so those re-read the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shadowline.application.role_commit import EventParts, RoleCommits
from shadowline.application.writer import Writer
from shadowline.domain.commands import ItemVersion, PutItem
from shadowline.domain.errors import Conflict, Unavailable, VersionConflict
from shadowline.domain.ha import RoleChange
from shadowline.domain.records import Head
from shadowline.domain.roles import Role
from tests.twins import InMemoryStore

META = {"actor": "test", "request_id": "r-1"}
SECRET = "test-secret"


class CountingStore(InMemoryStore):
    """The in-memory store, counting the scans of every item's version."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    async def versions(self) -> dict[tuple[str, str], ItemVersion]:
        self.scans += 1
        return await super().versions()


class TwinRepo:
    """HaRepository.change_role over the in-memory store: its steps in the same order, the
    event through the store's append (the compare-and-set on the head)."""

    def __init__(self, store: InMemoryStore, role: Role) -> None:
        self.store = store
        self.role = role
        self.lose_the_answer = False  # the change lands, its COMMIT's answer is lost

    async def change_role(self, change: RoleChange) -> int:
        # All or nothing, as the transaction: the compare-and-set is looked at first here.
        if self.role not in change.expect:
            raise Conflict(f"this instance is no longer in role {sorted(change.expect)}")
        moved = 0
        if change.quarantine_after is not None:
            assert change.epoch is not None
            moved = await self.store.quarantine_after(change.quarantine_after, change.epoch)
        if change.fence is not None:
            await self.store.fence(change.fence)
        if change.event is not None:
            await self.store.append([change.event], change.event.position - 1)
        self.role = change.role
        if self.lose_the_answer:
            raise Unavailable("event store unavailable: ConnectionResetError")
        return moved


class Node:
    def __init__(self) -> None:
        self.epoch = 1
        self.store = CountingStore()
        self.writer = Writer(self.store, epoch=lambda: self.epoch)
        self.repo = TwinRepo(self.store, Role.SHADOW)
        # The twin has the one method of HaRepo that a role change calls.
        self.commits = RoleCommits(self.store, self.writer, self.repo, "prod", SECRET)  # type: ignore[arg-type]


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node()
    await n.writer.load()
    task = asyncio.create_task(n.writer.run())
    for name in ("sa-1", "sa-2"):
        await n.writer.submit(PutItem("subaccount", name, {"region": "eu10"}, None, META))
    n.store.scans = 0
    yield n
    n.writer.close()
    await asyncio.wait_for(task, 5)


def promotion(epoch: int) -> tuple[RoleChange, EventParts]:
    change = RoleChange(Role.MASTER, frozenset({Role.SHADOW}), epoch=epoch, fence=epoch)
    return change, ("MasterPromoted", {"epoch": epoch}, {"actor": "watchdog-1"})


async def test_a_promotion_makes_its_event_the_writers_head_without_reading_every_item_again(
    node: Node,
) -> None:
    head, _ = await node.commits.commit(lambda head: promotion(2), node.epoch)
    node.epoch = 2

    assert head.position == 2
    stored = await node.store.head()
    assert (node.writer.position, node.writer.chain, node.writer.head_epoch) == (
        stored.position,
        stored.chain,
        2,
    )
    assert node.store.scans == 0, "the promotion re-read every item's version"
    # The next write chains on MasterPromoted and still sees sa-1 at version 1.
    event, _ = await node.writer.submit(PutItem("subaccount", "sa-1", {"region": "us10"}, 1, META))
    assert (event.position, event.version, event.epoch) == (4, 2, 2)


async def test_enabling_ha_makes_its_event_the_head_without_reading_every_item_again(
    node: Node,
) -> None:
    node.repo.role = Role.STANDALONE
    change = RoleChange(Role.MASTER, frozenset({Role.STANDALONE}), ha={"auto_confirm": False})
    parts: EventParts = ("HaEnabled", {"master": "node-a"}, {"actor": "admin"})

    await node.commits.commit(lambda head: (change, parts), node.epoch)

    assert (node.writer.position, node.store.scans) == (3, 0)


async def test_a_recovery_rereads_the_items_its_quarantine_rewound(node: Node) -> None:
    node.repo.role = Role.MASTER
    change = RoleChange(Role.SHADOW, frozenset({Role.MASTER}), epoch=2, quarantine_after=1)

    _, moved = await node.commits.commit(lambda head: (change, None), node.epoch)

    assert (moved, node.writer.position, node.store.scans) == (1, 1, 1)
    with pytest.raises(VersionConflict):  # sa-2 is gone with the quarantine: no version 1 to expect
        await node.writer.submit(PutItem("subaccount", "sa-2", {"region": "us10"}, 1, META))


async def test_a_role_change_whose_answer_was_lost_rereads_what_the_store_holds(
    node: Node,
) -> None:
    node.repo.lose_the_answer = True

    with pytest.raises(Unavailable):
        await node.commits.commit(lambda head: promotion(2), node.epoch)

    assert (node.writer.position, node.store.scans) == (3, 1)


async def test_a_refused_role_change_leaves_the_writer_as_it_was(node: Node) -> None:
    node.repo.role = Role.STANDALONE  # no longer a shadow: the compare-and-set refuses

    def decided(head: Head) -> tuple[RoleChange, EventParts]:
        return promotion(2)

    with pytest.raises(Conflict):
        await node.commits.commit(decided, node.epoch)

    assert (node.writer.position, node.store.scans) == (2, 0)
