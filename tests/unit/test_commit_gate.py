"""The commit gate with a real Liveness on the in-memory broker: a sync write waits for the
shadow's ack, the gate degrades to async only once a confirmed heartbeat announced it, and no
write is acknowledged without a lease.

Waiting is shown by a positive marker: the broker holding a heartbeat's confirm (`waiting`),
or an admit still pending after the loop ran everything else that was ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from shadowline.application.gate import CommitGate
from shadowline.application.liveness import Liveness
from shadowline.domain.errors import NotWritable
from tests.conftest import make_settings
from tests.twins import InMemoryBroker


class Harness:
    def __init__(self, timeout: float = 30.0, fenced: bool = False) -> None:
        self.settings = make_settings("postgresql://unused@127.0.0.1/unused")
        self.broker = InMemoryBroker(self.settings.cluster)
        self.alerts: list[tuple[str, str]] = []
        self.fenced = fenced
        self.liveness = Liveness(
            self.settings,
            self.broker,
            describe=lambda: {"role": "master", "epoch": 1, "replication": self.gate.replication},
        )
        self.gate = CommitGate(
            timeout=timeout,
            lease_valid=self.liveness.lease_valid,
            wait_lease=self.liveness.wait_lease,
            fenced=lambda: self.fenced,
            announce=self.liveness.beat_once,
            alert=lambda name, message: self.alerts.append((name, message)),
        )

    async def with_lease(self) -> None:
        await self.broker.start()
        assert await self.liveness.beat_once()

    async def sync_with_shadow_at(self, position: int) -> None:
        self.gate.configure(True, position)
        await self.gate.shadow_acked(position, head=position)
        assert self.gate.mode == "sync"


async def settle() -> None:
    """Let the loop run everything that is ready (no timer is involved in what is awaited)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def pending(work: Awaitable[Any]) -> asyncio.Task[Any]:
    """Start `work` and return it once it is blocked."""
    task = asyncio.ensure_future(work)
    await settle()
    assert not task.done(), task
    return task


async def test_a_sync_write_is_admitted_only_once_the_shadow_acknowledged_its_position() -> None:
    h = Harness()
    await h.with_lease()
    await h.sync_with_shadow_at(4)
    admit = await pending(h.gate.admit(6))

    await h.gate.shadow_acked(5, head=6)
    await settle()
    assert not admit.done()  # 5 is not enough
    await h.gate.shadow_acked(6, head=6)
    await admit

    assert admit.exception() is None
    assert (h.gate.mode, h.gate.acked) == ("sync", 6)
    assert h.alerts == []
    assert len(h.broker.heartbeats) == 1  # the lease's; nothing was announced


async def test_a_write_the_shadow_already_holds_is_admitted_at_once() -> None:
    h = Harness()
    await h.with_lease()
    await h.sync_with_shadow_at(9)

    await h.gate.admit(9)
    assert h.gate.mode == "sync"


async def test_the_gate_degrades_to_async_only_after_a_heartbeat_saying_so_is_confirmed() -> None:
    h = Harness(timeout=0.05)
    await h.with_lease()
    await h.sync_with_shadow_at(1)
    h.broker.hold_confirms()
    admit = asyncio.ensure_future(h.gate.admit(2))
    await h.broker.waiting.wait()  # the announce is out, its confirm withheld

    assert not admit.done()
    assert h.gate.mode == "sync"
    assert h.gate.replication == "async"  # what the heartbeats say from now on
    assert h.alerts == []
    h.broker.give_confirms()
    await admit

    assert h.gate.mode == "async"
    assert h.broker.heartbeats[-1]["replication"] == "async"
    assert [name for name, _ in h.alerts] == ["sync-degraded"]


async def test_a_degrade_whose_announce_is_not_confirmed_acknowledges_nothing() -> None:
    h = Harness(timeout=0.05)
    await h.with_lease()
    await h.sync_with_shadow_at(1)
    h.broker.refuse_confirms(ConnectionError("the broker went away"))

    with pytest.raises(NotWritable, match="could not be announced"):
        await h.gate.admit(2)
    assert (h.gate.mode, h.gate.replication) == ("sync", "sync")
    assert h.alerts == []
    assert len(h.broker.heartbeats) == 1


async def test_writes_queued_behind_a_failed_announcement_fail_at_once_not_each_announcing() -> (
    None
):
    h = Harness(timeout=0.05)
    await h.with_lease()
    await h.sync_with_shadow_at(1)
    h.broker.refuse_confirms(ConnectionError("the broker went away"))
    before = h.broker.attempts
    results = await asyncio.gather(*(h.gate.admit(n) for n in range(2, 12)), return_exceptions=True)
    assert all(isinstance(r, NotWritable) for r in results)
    assert h.broker.attempts - before == 1  # one announcement for the ten of them


async def test_after_degrading_the_gate_turns_sync_again_once_the_shadow_caught_up() -> None:
    h = Harness(timeout=0.05)
    await h.with_lease()
    await h.sync_with_shadow_at(1)
    await h.gate.admit(2)
    assert h.gate.mode == "async"

    await h.gate.shadow_acked(2, head=3)
    assert h.gate.mode == "async"
    await h.gate.shadow_acked(3, head=3)
    assert h.gate.mode == "sync"


async def test_no_write_is_admitted_without_a_lease_in_any_mode() -> None:
    h = Harness()
    with pytest.raises(NotWritable, match="no valid lease"):
        await h.gate.admit(1)  # never confirmed a heartbeat
    await h.with_lease()
    await h.gate.admit(1)
    h.liveness.confirmed_at = time.monotonic() - h.settings.lease - 1
    with pytest.raises(NotWritable, match="no valid lease"):
        await h.gate.admit(2)

    await h.with_lease()
    await h.sync_with_shadow_at(3)
    h.liveness.confirmed_at = time.monotonic() - h.settings.lease - 1
    with pytest.raises(NotWritable, match="no valid lease"):
        await h.gate.admit(3)  # even a write the shadow holds


async def test_a_fenced_master_admits_only_writes_the_shadow_already_holds() -> None:
    h = Harness(fenced=True)
    await h.with_lease()
    h.gate.configure(True, 5)  # async until the shadow caught up

    await h.gate.admit(5)
    with pytest.raises(NotWritable):
        await h.gate.admit(6)
    h.gate.configure(False, 0)
    with pytest.raises(NotWritable):
        await h.gate.admit(5)  # no shadow: nothing is held


async def test_writes_waiting_for_the_old_shadow_are_refused_when_the_relation_changes() -> None:
    h = Harness()
    await h.with_lease()
    await h.sync_with_shadow_at(1)
    admit = await pending(h.gate.admit(2))

    h.gate.configure(True, 0)
    with pytest.raises(NotWritable, match="roles changed"):
        await admit
    assert h.gate.mode == "async"


async def test_a_lease_is_waited_for_until_a_heartbeat_is_confirmed() -> None:
    h = Harness()
    await h.broker.start()
    h.broker.hold_confirms()
    beat = asyncio.ensure_future(h.liveness.beat_once())
    await h.broker.waiting.wait()
    waiting = await pending(h.gate.wait_lease(30))

    h.broker.give_confirms()
    assert await beat is True
    assert await waiting is True
