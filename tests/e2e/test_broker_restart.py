"""A master and its shadow on a private RabbitMQ node that is restarted under write load.

While the broker is away the master acknowledges writes only as long as its lease lasts (its
last confirmed heartbeat; DESIGN.md), then fences itself and answers 503 until heartbeats are
confirmed again. Once the broker is back the relay resumes from its cursor, the shadow catches
up, and neither side crash-loops.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from shadowline.settings import LEASE_FRACTION, Settings
from tests.e2e.conftest import Pair, make_process
from tests.e2e.rabbit import RabbitNode, rabbitmq_problem
from tests.e2e.test_replication_faults import (
    LoadWriter,
    assert_acks_replicated,
    assert_converged,
    assert_each_event_applied_once,
    assert_no_crash_loop,
    wait_until,
    write_mappings,
)

# The instances run with the default timings: takeover delay 5 s, so a 3 s lease, 1 s heartbeats.
LEASE = Settings.model_fields["takeover_delay"].default * LEASE_FRACTION
HEARTBEAT = Settings.model_fields["heartbeat_interval"].default


@pytest.fixture
def rabbit_node(tmp_path: Path) -> Iterator[RabbitNode]:
    problem = rabbitmq_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"a private RabbitMQ node cannot run: {problem}")
        pytest.skip(f"a private RabbitMQ node cannot run: {problem}")
    node = RabbitNode(tmp_path / "rabbitmq")
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture
async def broker_pair(
    db_factory: Callable[[], Awaitable[str]], rabbit_node: RabbitNode, tmp_path: Path
) -> AsyncIterator[Pair]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    processes = [
        make_process(
            await db_factory(),
            tmp_path / f"{name}.log",
            name=name,
            cluster=cluster,
            SHADOWLINE_AMQP_URL=rabbit_node.url,
        )
        for name in ("master", "shadow")
    ]
    master, shadow = processes
    yield Pair(master, shadow, cluster)
    for process in reversed(processes):
        process.stop()


def test_the_shadow_converges_after_a_broker_restart_under_write_load(
    broker_pair: Pair, rabbit_node: RabbitNode
) -> None:
    pair = broker_pair
    pair.set_up()
    write_mappings(pair.master, 5)
    assert_converged(pair)
    load = LoadWriter(pair.master)
    load.start()
    try:
        load.wait_for_acks(50)
        rabbit_node.stop()
        down_at = time.monotonic()
        wait_until(lambda: load.refusals, 15, "the master to fence itself (503) without the broker")
        rabbit_node.start()
        up_at = time.monotonic()
        load.wait_for_acks(50, timeout=30)  # the lease is back with the first confirmed heartbeat
    finally:
        load.finish()
    assert not load.errors, load.errors[:5]
    # DESIGN: no write is acknowledged once the lease (confirmed heartbeats) has run out.
    fenced_by = down_at + LEASE + HEARTBEAT + 1.0  # 1 s for the answer on a busy machine
    late = [t - down_at for t in load.ack_times if fenced_by < t < up_at]
    assert not late, f"acknowledged {len(late)} writes {late[0]:.1f}s into a broker outage"
    assert_each_event_applied_once(pair, assert_converged(pair, timeout=60))
    assert_no_crash_loop(pair.master, starts=1)
    assert_acks_replicated(pair, load.acks)
