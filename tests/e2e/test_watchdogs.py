"""Two watchdogs on one cluster at once (issue 11): exactly one promotion per failure, and
failover still happens when one of them dies in the middle of it.

On the shared broker, both cases; tests/e2e/test_broker_cluster.py kills the first one
mid-failover with the two watchdogs on different nodes of a 3-node broker cluster.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from shadowline.harness import WatchdogProcess
from tests.e2e import failover_fixtures
from tests.e2e.failover_fixtures import (
    TAKEOVER_DELAY,
    HaCluster,
    WriteLoad,
    assert_every_ack_is_on,
    assert_single_promotion,
    in_order,
    is_role,
    wait_for,
    wait_role,
)

ha_cluster = failover_fixtures.ha_cluster


def _second_watchdog(cluster: HaCluster, log: Path) -> WatchdogProcess:
    second = WatchdogProcess(env=cluster.watchdog.env, log=log, cluster=cluster.cluster)
    second.watchdog_name = "watchdog-b"
    return second


def _both_watching(cluster: HaCluster, other: WatchdogProcess) -> None:
    """Both started, and each has heard the other's announcement (so both know the order)."""
    cluster.set_up()
    other.start()
    other.wait_watching()
    for watchdog, peer in ((cluster.watchdog, other), (other, cluster.watchdog)):
        watchdog.wait_logged(f"hears watchdog {peer.watchdog_name}", timeout=4 * TAKEOVER_DELAY)


@pytest.mark.parametrize("first_dies", [False, True], ids=["both live", "first killed probing"])
def test_two_watchdogs_promote_once_even_when_the_first_dies_during_the_failover(
    ha_cluster: HaCluster, tmp_path: Path, first_dies: bool
) -> None:
    """The master is paused (SIGSTOP: its probe then times out, so the first watchdog in the
    order can be killed after it said it probes and before any promote). Both live: the first
    promotes, the second never does. The first killed: the second promotes, once."""
    other = _second_watchdog(ha_cluster, tmp_path / "watchdog-b.log")
    old, new = ha_cluster.master, ha_cluster.shadow
    try:
        _both_watching(ha_cluster, other)
        first, second = in_order(ha_cluster.cluster, ha_cluster.watchdog, other)
        offsets = {w.watchdog_name: len(w.text()) for w in (first, second)}
        load = WriteLoad([old.url, new.url]).start()
        try:
            load.wait_acks(100, timeout=20)
            old.signal(signal.SIGSTOP)
            paused = time.monotonic()
            first.wait_logged("probing it directly", timeout=10, after=offsets[first.watchdog_name])
            if first_dies:
                first.kill()
            promoted = wait_role(new, "master", 2, timeout=20)
            print(f"\nmaster paused -> shadow promoted after {promoted - paused:.2f}s")
            time.sleep(2 * TAKEOVER_DELAY)  # time enough for a second promotion, if any
            load.wait_acks(20, timeout=10, since=promoted)
        finally:
            load.stop()
            old.signal(signal.SIGCONT)
        promotion = assert_single_promotion(new)
        assert is_role(new, "master", 2)
        actor = second if first_dies else first
        assert promotion["data"]["issued_by"] == actor.watchdog_name, promotion
        idle = second.text(offsets[second.watchdog_name]) if not first_dies else ""
        assert "promoting shadow" not in idle, idle[-2000:]
        assert_every_ack_is_on(new, load.acks)
        wait_role(old, "shadow", 2, timeout=20)  # the paused master, resumed, rejoins
        print(f"promoted by {actor.watchdog_name}: {promotion['data']['reason']}")
        if first_dies:
            said = second.text(offsets[second.watchdog_name])
            wait_for(lambda: "promoting shadow" in said, 1, "the second to promote", 0.1)
    finally:
        other.stop()
