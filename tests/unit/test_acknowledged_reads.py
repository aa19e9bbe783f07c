"""A master answers a read only with what is acknowledged (application.service): in sync mode
a write is stored before the shadow applies it, and a failover then quarantines it. A chaos
run (issue 12) read such a write on the master, then the older value on the new master."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shadowline.adapters.resources import load_config_schemas
from shadowline.application.roles import CurrentRole
from shadowline.application.service import ConfigService
from shadowline.domain.errors import NotAcknowledged, Unavailable
from shadowline.domain.records import Head
from shadowline.domain.roles import Role, RoleState
from shadowline.domain.validation import Catalog

VALUE = {"region": "eu10", "subaccount_id": "a1"}


class Store:
    async def item(self, kind: str, name: str) -> tuple[Any, int] | None:
        return VALUE, 3

    async def head(self) -> Head:
        return Head(position=7, chain=b"", recorded_at=None)

    async def current(self) -> tuple[int, dict[str, Any]]:
        return 7, {"subaccount/a1": {"value": VALUE, "version": 3}}


class Gate:
    """The commit gate: acknowledges position 7 once `acked` is set, or refuses."""

    def __init__(self, refuses: bool = False, leased: bool = True) -> None:
        self.acked = asyncio.Event()
        self.asked: list[int] = []
        self.refuses = refuses
        self.leased = leased

    async def admit(self, position: int, master_url: str | None = None) -> None:
        self.asked.append(position)
        if self.refuses:
            raise NotAcknowledged("the lease ran out", master_url)
        await self.acked.wait()


def _service(role: Role, gate: Gate) -> ConfigService:
    return ConfigService(
        catalog=Catalog(load_config_schemas()),
        store=cast(Any, Store()),
        writer=cast(Any, None),
        local=cast(Any, None),
        role=CurrentRole(RoleState(role, 2)),
        gate=cast(Any, gate),
    )


async def test_a_read_on_the_master_waits_until_the_head_it_may_show_is_acknowledged() -> None:
    gate = Gate()
    service = _service(Role.MASTER, gate)
    read = asyncio.create_task(service.get("subaccount", "a1"))
    await asyncio.sleep(0.05)
    assert not read.done() and gate.asked == [7]
    gate.acked.set()
    assert await read == (VALUE, 3)
    state = asyncio.create_task(service.state())
    assert await state == (7, {"subaccount/a1": {"value": VALUE, "version": 3}})


async def test_a_read_a_write_there_could_not_be_acknowledged_either_is_a_503() -> None:
    service = _service(Role.MASTER, Gate(refuses=True))
    with pytest.raises(Unavailable, match="cannot answer a read now"):
        await service.get("subaccount", "a1")
    with pytest.raises(Unavailable):
        await service.state()


async def test_a_shadow_reads_what_it_applied_without_waiting() -> None:
    gate = Gate(refuses=True)
    service = _service(Role.SHADOW, gate)
    assert await service.get("subaccount", "a1") == (VALUE, 3)
    assert gate.asked == []


async def test_a_master_without_a_lease_refuses_a_read_at_once() -> None:
    gate = Gate(leased=False)
    with pytest.raises(Unavailable, match="no valid lease"):
        await _service(Role.MASTER, gate).get("subaccount", "a1")
    assert gate.asked == []
