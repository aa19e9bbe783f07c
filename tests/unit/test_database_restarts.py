"""PostgreSQL restarting under a role change is a pause to retry, never a crash of the task
that asked for it: the HA record's adapter turns driver errors into Unavailable (as the event
store does), the lease watch tries its recovery again on a later turn, and a promote refused
meanwhile leaves the shadow able to take the next one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.application import lease
from shadowline.domain import failover as rules
from shadowline.domain.errors import Unavailable
from shadowline.domain.ha import RoleChange
from shadowline.domain.roles import Role
from tests.unit.test_message_schemas import (
    FORK,
    MASTER,
    Delivery,
    Node,
    _command,
    node,
    record,
)

DOWN = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


@pytest.fixture
async def repo_of_a_database_that_is_down() -> Any:
    engine = create_engine(DOWN, pool_size=1)
    yield HaRepository(engine)
    await engine.dispose()


async def test_a_role_change_while_the_database_is_down_is_unavailable_not_a_driver_error(
    repo_of_a_database_that_is_down: HaRepository,
) -> None:
    rejoin = RoleChange(Role.SHADOW, frozenset({Role.MASTER}), epoch=2, quarantine_after=3)
    with pytest.raises(Unavailable, match="event store unavailable"):
        await repo_of_a_database_that_is_down.change_role(rejoin)


async def test_reading_or_updating_the_ha_record_while_the_database_is_down_is_unavailable(
    repo_of_a_database_that_is_down: HaRepository,
) -> None:
    repo = repo_of_a_database_that_is_down
    with pytest.raises(Unavailable):
        await repo.load()
    with pytest.raises(Unavailable):
        await repo.shadow_seen("node-b", 7)


def restarting_once(n: Node) -> list[int]:
    """The node's role changes meet a database restart the first time; returns the attempts."""
    attempts: list[int] = []
    commit = n.ha.commit

    async def flaky(change_at: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise Unavailable("event store unavailable: ConnectionDoesNotExistError")
        return await commit(change_at)

    n.ha.commit = flaky  # type: ignore[method-assign]
    return attempts


class NewerMasterHeard:
    """Heartbeats with a valid lease, and a master of epoch 2 heard on the broker."""

    connected_at = time.monotonic()

    def lease_valid(self, now: float | None = None) -> bool:
        return True

    def newest_epoch_heard(self, within: float) -> tuple[int, dict[str, Any] | None]:
        return 2, {"role": "master", "url": "http://127.0.0.1:8082", "instance": "node-b"}

    async def wait_lease(self, within: float) -> bool:
        return True


async def test_a_lease_watch_whose_recovery_meets_a_database_restart_recovers_on_a_later_turn() -> (
    None
):
    n = node(MASTER)
    n.ha.peer_client.fork = FORK
    attempts = restarting_once(n)
    timing = rules.Timing("node-a", lease=1.2, takeover_delay=2.0)

    # The watch returns once this instance is no longer master: it rejoined as shadow.
    await asyncio.wait_for(lease.watch(n.failover, NewerMasterHeard(), timing, False), 10)

    assert len(attempts) == 2
    assert (n.ha.role.role, n.ha.role.epoch) == ("shadow", 2)


async def test_a_promote_refused_by_a_database_restart_leaves_the_shadow_able_to_take_the_next() -> (
    None
):
    n = node(record("shadow", master_instance="node-b", master_url="http://127.0.0.1:8082"))
    attempts = restarting_once(n)
    delivery = Delivery(orjson.dumps(_command()), "promote.node-a")

    await n.promote.on_command(delivery)  # type: ignore[arg-type]  # refused, and alerted
    assert n.ha.role.role == "shadow"
    await n.promote.on_command(Delivery(orjson.dumps(_command()), "promote.node-a"))  # type: ignore[arg-type]

    assert len(attempts) == 2
    assert (n.ha.role.role, n.ha.role.epoch) == ("master", 2)
