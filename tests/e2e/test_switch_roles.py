"""Switch roles: the planned, lossless handover from the master to its shadow, under a write
load that follows the master; and its refusal (409, with a clear error) when it cannot be done.
"""

from __future__ import annotations

import signal
import time

from tests.e2e import failover_fixtures
from tests.e2e.failover_fixtures import (
    HaCluster,
    WriteLoad,
    admin,
    assert_every_ack_is_on,
    assert_single_promotion,
    health,
    is_role,
    longest_gap,
    mapping,
    verify_agrees,
    wait_role,
)

ha_cluster = failover_fixtures.ha_cluster


def test_switch_roles_under_write_load_swaps_the_roles_without_losing_a_write(
    ha_cluster: HaCluster,
) -> None:
    old, new = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up()
    load = WriteLoad([old.url, new.url]).start()
    try:
        load.wait_acks(150, timeout=20)
        started = time.monotonic()
        with admin(old, timeout=30) as client:
            response = client.post("/ha/switch-roles")
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        wait_role(new, "master", 2, timeout=10)
        wait_role(old, "shadow", 2, timeout=10)
        load.wait_acks(100, timeout=15, since=answered)
    finally:
        load.stop()
    result = response.json()
    gap = longest_gap(load.acks, started - 1.0, answered + 1.0)
    print(
        f"\nswitch roles answered in {answered - started:.2f}s ({result}); longest time "
        f"without an acknowledged write around it: {gap:.3f}s; acks before/after: "
        f"{sum(a.epoch == 1 for a in load.acks)}/{sum(a.epoch == 2 for a in load.acks)}"
    )
    assert result["new_master"] == "node-b" and result["epoch"] == 2
    assert result["quarantined"] == 0, "a planned handover must lose nothing"
    promotion = assert_single_promotion(new)
    assert promotion["data"]["issued_by"] == "node-a"
    assert_every_ack_is_on(new, load.acks)
    print(verify_agrees(old)["sentence"])
    assert "promoting shadow" not in ha_cluster.watchdog.text(), "the watchdog interfered"


def test_switch_roles_is_refused_on_a_shadow_and_when_the_shadow_is_not_connected(
    ha_cluster: HaCluster,
) -> None:
    master, shadow = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up(watchdog=False)
    with admin(shadow) as client:
        on_shadow = client.post("/ha/switch-roles")
    assert on_shadow.status_code == 409, on_shadow.text
    print(f"\non the shadow: {on_shadow.json()['error']}")
    assert "master" in on_shadow.json()["error"]
    assert on_shadow.json()["master"] == master.url, "the refusal names where to ask instead"

    shadow.signal(signal.SIGTERM)
    assert shadow.wait() == 0
    with admin(master) as client:
        stopped = client.post("/ha/switch-roles")
        print(f"right after the shadow stopped: {stopped.status_code} {stopped.text}")
        assert stopped.status_code == 409, stopped.text
        assert "shadow" in stopped.json()["error"]
        # The refused handover leaves the master as it was: master in epoch 1, writable.
        assert is_role(master, "master", 1), health(master)
        put = client.put("/config/system-mapping/after", json=mapping("after", 1))
        assert put.status_code in (200, 201), put.text
