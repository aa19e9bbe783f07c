"""The master's lease watch when a switch of roles wins the race: the watch decided to rejoin
the newer master it heard, but the switch had already made this instance that master's shadow.
That is the normal end of a switch of roles, not a warning."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from shadowline.application import lease
from shadowline.application.roles import CurrentRole
from shadowline.domain import failover as rules
from shadowline.domain.errors import Conflict
from shadowline.domain.roles import FenceReason, Role, RoleState

NEW_MASTER = {"role": "master", "url": "http://127.0.0.1:8082", "instance": "node-b"}


class Heard:
    """Heartbeats confirmed, and node-b heard as master of the epoch the switch made."""

    connected_at = 0.0

    def lease_valid(self, now: float | None = None) -> bool:
        return True

    def newest_epoch_heard(self, within: float) -> tuple[int, dict[str, Any] | None]:
        return 3, NEW_MASTER

    async def wait_lease(self, within: float) -> bool:
        return True


class Switched:
    """A Failover whose switch of roles rejoined node-b while the lease watch waited its turn."""

    def __init__(self) -> None:
        fenced = RoleState(Role.MASTER, 2).fenced_by(
            FenceReason.REJOINING, rules.rejoining_after_handover("node-b", 3)
        )
        self.role = CurrentRole(fenced)
        self.settings = SimpleNamespace(heartbeat_interval=0.5)
        self.recovers = 0

    async def recover(self, url: str, instance: str | None) -> dict[str, Any]:
        self.recovers += 1  # the switch held the lock; it is done when we get it
        self.role.set(replace(self.role.state.unfenced(), role=Role.SHADOW, epoch=3))
        raise Conflict(f"only an old master recovers; this instance is {self.role.state.role}")


async def test_a_rejoin_that_a_switch_of_roles_already_did_is_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failover = Switched()
    timing = rules.Timing("node-a", lease=2.0, takeover_delay=2.0)
    with caplog.at_level(logging.DEBUG, logger="shadowline"):
        await asyncio.wait_for(lease.watch(failover, Heard(), timing, False), 5)  # type: ignore[arg-type]
    assert failover.recovers == 1 and failover.role.state.role is Role.SHADOW
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert any("shadow" in r.getMessage() for r in caplog.records), "it still says what happened"
