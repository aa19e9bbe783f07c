"""Failover with real processes: a master killed, paused or cut from the broker under a write
load that follows the master, a watchdog restarted in the middle of a failover, a shadow killed
while it is being promoted.

The verdict is always the same: exactly one promotion, the shadow becomes master in epoch 2,
every acknowledged write is on the new master with its value, and an old master that comes back
rejoins as the shadow of the new one.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import (
    TAKEOVER_DELAY,
    HaCluster,
    WriteLoad,
    admin,
    assert_every_ack_is_on,
    assert_single_promotion,
    health_of,
    is_role,
    mapping,
    promotions,
    verify_agrees,
    wait_for,
    wait_role,
)
from tests.e2e.write_load import Ack, Answer

ha_cluster = failover_fixtures.ha_cluster
ha_cluster_behind_proxy = failover_fixtures.ha_cluster_behind_proxy


def _load(cluster: HaCluster) -> WriteLoad:
    return WriteLoad([cluster.master.url, cluster.shadow.url]).start()


def test_a_master_killed_under_write_load_fails_over_without_losing_an_acknowledged_write(
    ha_cluster: HaCluster,
) -> None:
    ha_cluster.set_up()
    load = _load(ha_cluster)
    try:
        load.wait_acks(150, timeout=20)
        ha_cluster.master.signal(signal.SIGKILL)
        killed = time.monotonic()
        promoted = wait_role(ha_cluster.shadow, "master", 2, timeout=15)
        print(f"\nkill -9 -> shadow promoted in {promoted - killed:.2f}s")
        load.wait_acks(20, timeout=10, since=promoted)  # the new master accepts writes
    finally:
        load.stop()
    assert ha_cluster.master.wait() == -signal.SIGKILL
    assert any(a.epoch == 2 and a.url == ha_cluster.shadow.url for a in load.acks)
    assert_every_ack_is_on(ha_cluster.shadow, load.acks)
    assert_single_promotion(ha_cluster.shadow)


def _writes_to(process_url: str, load: WriteLoad, after: float) -> tuple[list[Ack], list[Answer]]:
    """Acks and refusals of the writes sent to `process_url` at or after `after`."""
    acks = [a for a in load.acks if a.url == process_url and a.sent >= after]
    others = [a for a in load.answers if a.url == process_url and a.sent >= after]
    return acks, others


def test_a_master_paused_longer_than_the_takeover_delay_is_replaced_once_and_rejoins_as_shadow(
    ha_cluster: HaCluster,
) -> None:
    old, new = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up()
    # One writer, whose write in flight when the master is paused waits for its answer until it
    # resumes: with a single writer that write is often committed but not yet relayed, which is
    # when an acknowledgement after the promotion would lose it.
    load = WriteLoad([old.url, new.url], workers=1, timeout=8).start()
    pinned = WriteLoad([old.url], workers=2, follow=False)  # sent to it after SIGCONT
    try:
        load.wait_acks(150, timeout=20)
        old.signal(signal.SIGSTOP)
        paused = time.monotonic()
        promoted = wait_role(new, "master", 2, timeout=15)
        time.sleep(max(0.0, paused + 2 * TAKEOVER_DELAY - time.monotonic()))
        old.signal(signal.SIGCONT)
        resumed = time.monotonic()
        pinned.start()
        print(f"\nSIGSTOP -> shadow promoted in {promoted - paused:.2f}s; SIGCONT after 4s")
        rejoined = wait_role(old, "shadow", 2, timeout=10)
        print(f"SIGCONT -> old master is shadow in epoch 2 after {rejoined - resumed:.2f}s")
        load.wait_acks(20, timeout=10, since=rejoined)
    finally:
        pinned.stop()
        load.stop()
    promotion = assert_single_promotion(new)
    assert not promotions(old)[1:], "the old master recorded a promotion of its own"
    # Nothing sent to the old master after it resumed was acknowledged ...
    assert not pinned.acks, f"the resumed old master acknowledged {pinned.acks[:5]}"
    assert pinned.answers, "no write reached the old master after SIGCONT"
    assert {a.status for a in pinned.answers} <= {503, None}, pinned.answers[:5]
    answered = [a for a in load.acks if a.url == old.url and a.received >= resumed]
    print(
        f"writes sent to the old master after SIGCONT: {len(pinned.answers)}, all refused; "
        f"writes in flight across the pause acknowledged after SIGCONT: {len(answered)}"
    )
    # ... nor, after the promotion, anything the new master does not hold.
    assert_every_ack_is_on(new, load.acks)
    fork = promotion["data"]["fork_position"]
    with admin(old) as client:
        quarantine = client.get("/ha/quarantine").json()
    print(f"fork position {fork}; quarantined on the old master: {quarantine['count']}")
    for ack in answered:
        print(f"  acknowledged after SIGCONT: position {ack.position} epoch {ack.epoch}")
    for event in quarantine["events"]:
        print(f"  quarantined: position {event['position']} {event['name']} v{event['version']}")
    assert all(e["position"] > fork and e["epoch"] == 1 for e in quarantine["events"])
    acked = {(a.position, a.epoch) for a in load.acks}
    assert not [e for e in quarantine["events"] if (e["position"], 1) in acked], (
        "an acknowledged write was quarantined"
    )
    assert f"{quarantine['count']} events quarantined" in old.log.read_text()
    verify = verify_agrees(old)
    print(verify["sentence"])


def test_a_master_paused_shorter_than_the_takeover_delay_is_not_replaced(
    ha_cluster: HaCluster,
) -> None:
    master, shadow = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up()
    load = _load(ha_cluster)
    try:
        load.wait_acks(50, timeout=20)
        master.signal(signal.SIGSTOP)
        time.sleep(1.0)
        master.signal(signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(2 * TAKEOVER_DELAY)  # a watchdog would have acted by now
        load.wait_acks(20, timeout=10, since=resumed)
    finally:
        load.stop()
    assert health_of(master)["role"] == "master" and health_of(master)["epoch"] == 1
    assert health_of(shadow)["role"] == "shadow" and health_of(shadow)["epoch"] == 1
    assert not promotions(master) and not promotions(shadow)
    assert "promoting" not in ha_cluster.watchdog.text()
    assert {a.epoch for a in load.acks} == {1}
    assert_every_ack_is_on(master, load.acks)


def _ha_role(process: Process) -> str | None:
    """The role GET /ha shows (a fenced master shows `fenced` there)."""
    try:
        with admin(process, timeout=0.5) as client:
            role: str | None = client.get("/ha").json()["role"]
            return role
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _first_times(
    checks: dict[str, Callable[[], bool]], until: str, timeout: float
) -> dict[str, float]:
    """Poll every check until `until` holds; returns when each first held (monotonic)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while until not in seen and time.monotonic() < deadline:
        for name, check in checks.items():
            if name not in seen and check():
                seen[name] = time.monotonic()
        time.sleep(0.02)
    return seen


def test_a_master_cut_from_the_broker_fences_itself_before_the_shadow_is_promoted(
    ha_cluster_behind_proxy: HaCluster,
) -> None:
    cluster = ha_cluster_behind_proxy
    old, new = cluster.master, cluster.shadow
    assert cluster.proxy is not None
    cluster.set_up()
    load = _load(cluster)
    try:
        load.wait_acks(100, timeout=20)
        cluster.proxy.cut("blackhole")
        cut = time.monotonic()
        seen = _first_times(
            {
                "fenced (/health)": lambda: is_role(old, "fenced"),
                "fenced (/ha)": lambda: _ha_role(old) == "fenced",
                "promoted": lambda: is_role(new, "master", 2),
            },
            until="promoted",
            timeout=15,
        )
        print("\n" + ", ".join(f"{k} after {v - cut:.2f}s" for k, v in seen.items()))
        refused = httpx.put(
            f"{old.url}/config/system-mapping/during-cut",
            json=mapping("during-cut", 1),
            auth=("admin", ADMIN_PASSWORD),
            timeout=5,
        )
        cluster.proxy.restore()
        restored = time.monotonic()
        assert "fenced (/ha)" in seen, f"the master never fenced itself: {seen}"
        assert "promoted" in seen, f"the shadow was not promoted: {seen}"
        assert "fenced (/health)" in seen, f"GET /health never showed the role fenced: {seen}"
        assert seen["fenced (/health)"] < seen["promoted"]
        assert refused.status_code == 503, refused.text
        rejoined = wait_role(old, "shadow", 2, timeout=15)
        print(f"restored -> old master is shadow in epoch 2 after {rejoined - restored:.2f}s")
        load.wait_acks(20, timeout=10, since=rejoined)
    finally:
        load.stop()
    assert_single_promotion(new)
    assert_every_ack_is_on(new, load.acks)
    print(verify_agrees(old)["sentence"])


@pytest.mark.parametrize("moment", ["probing", "sent"])
def test_a_watchdog_restarted_during_a_failover_leads_to_exactly_one_promotion(
    ha_cluster: HaCluster, moment: str
) -> None:
    """Killed right after it logged that it probes the master (no promote sent yet), or right
    after its promote command reached the shadow: the next watchdog finishes the job, once."""
    old, new, watchdog = ha_cluster.master, ha_cluster.shadow, ha_cluster.watchdog
    ha_cluster.set_up()
    load = _load(ha_cluster)
    try:
        load.wait_acks(100, timeout=20)
        offset = len(watchdog.text())
        old.signal(signal.SIGKILL)
        killed = time.monotonic()
        if moment == "probing":
            watchdog.wait_logged("probing it directly", timeout=10, after=offset)
        else:
            wait_for(lambda: "promoted to master" in new.log.read_text(), 10, "the promotion", 0.01)
        watchdog.kill()
        print(f"\nwatchdog killed {time.monotonic() - killed:.2f}s after the master ({moment})")
        watchdog.start()
        promoted = wait_role(new, "master", 2, timeout=20)
        print(f"kill -9 of the master -> shadow promoted after {promoted - killed:.2f}s")
        watchdog.wait_watching()
        time.sleep(2 * TAKEOVER_DELAY)  # time enough for a second promotion, if any
        load.wait_acks(20, timeout=10, since=promoted)
    finally:
        load.stop()
    promotion = assert_single_promotion(new)
    assert is_role(new, "master", 2)
    issued_by = promotion["data"]["issued_by"]
    print(f"promoted by {issued_by}: {promotion['data']['reason']}")
    assert issued_by == ("watchdog-2" if moment == "probing" else "watchdog-1")
    second = watchdog.text()[watchdog.text().rfind("watchdog watchdog-2:") :]
    assert ("promoting shadow" in second) == (moment == "probing"), second[-2000:]
    assert_every_ack_is_on(new, load.acks)


def test_a_shadow_killed_during_its_promotion_ends_with_one_master_and_no_lost_write(
    ha_cluster: HaCluster,
) -> None:
    old, new, watchdog = ha_cluster.master, ha_cluster.shadow, ha_cluster.watchdog
    ha_cluster.set_up()
    load = _load(ha_cluster)
    try:
        load.wait_acks(100, timeout=20)
        offset = len(watchdog.text())
        old.signal(signal.SIGKILL)
        watchdog.wait_logged("promoting shadow", timeout=10, after=offset)
        new.signal(signal.SIGKILL)
        killed = time.monotonic()
        new.wait()
        before = new.log.read_text()
        promoted_before_kill = "promoted to master" in before
        new.start()
        new.wait_healthy()
        restarted = time.monotonic()
        outcome = wait_for(
            lambda: (
                (is_role(new, "master", 2) and "promoted")
                or ("cannot fail over" in watchdog.text()[offset:] and "refused")
            ),
            timeout=25,
            what="the restarted shadow to be promoted, or the watchdog to give up",
        )
        print(
            f"\nshadow killed on 'promoting' (promotion committed before the kill: "
            f"{promoted_before_kill}); restarted in {restarted - killed:.2f}s; outcome: {outcome} "
            f"{time.monotonic() - restarted:.2f}s after the restart"
        )
        if outcome == "promoted":
            load.wait_acks(20, timeout=10, since=time.monotonic())
    finally:
        load.stop()
    sent = watchdog.text()[offset:].count("promote command sent again")
    print(f"promote commands re-sent by the watchdog: {sent}")
    if outcome == "promoted":
        assert_single_promotion(new)
    else:
        assert not promotions(new) and is_role(new, "shadow", 1)
    assert_every_ack_is_on(new, load.acks)
