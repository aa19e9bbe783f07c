"""Hooks with real commands whose runs are counted (a tiny script appending a line per run): a
failover runs the role-change hook exactly once on the new master, a switch once on each
instance, a restart reruns nothing; a failing before-promote hook aborts the promotion (the
shadow stays a shadow, alerted, not retried in a tight loop) and one that succeeds lets it
happen; a switch whose hook fails is refused and the old master keeps writing."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import (
    TAKEOVER_DELAY,
    HaCluster,
    admin,
    assert_single_promotion,
    health_of,
    is_role,
    promotions,
    wait_for,
    wait_role,
)
from tests.integration.hook_script import Hook, make_hook

ha_cluster = failover_fixtures.ha_cluster
pytestmark = pytest.mark.e2e


def _hooks(process: Process, tmp_path: Path) -> tuple[Hook, Hook]:
    """Give the (not yet started) process both hooks, each counting its runs in its own file."""
    on_change = make_hook(tmp_path / f"{process.name}-on-role-change")
    before = make_hook(tmp_path / f"{process.name}-before-promote")
    process.env["SHADOWLINE_ON_ROLE_CHANGE"] = on_change.command
    process.env["SHADOWLINE_BEFORE_PROMOTE"] = before.command
    return on_change, before


def _changes(hook: Hook) -> list[list[str]]:
    """Each run: [role, previous_role, epoch, cause, attempt]."""
    return [run[1:6] for run in hook.runs()]


def _wait_runs(hook: Hook, count: int, what: str, timeout: float = 30) -> list[list[str]]:
    wait_for(lambda: len(hook.runs()) >= count, timeout, what, every=0.05)
    return _changes(hook)


def _put(process: Process, name: str) -> int:
    value = {"region": "eu10", "subaccount_id": name}
    with admin(process) as client:
        return client.put(f"/config/subaccount/{name}", json=value).status_code


def test_failover_switch_and_restarts_run_each_role_change_hook_exactly_once(
    ha_cluster: HaCluster, tmp_path: Path
) -> None:
    a, b = ha_cluster.master, ha_cluster.shadow
    a_changes, a_before = _hooks(a, tmp_path)
    b_changes, b_before = _hooks(b, tmp_path)
    ha_cluster.set_up()
    assert _wait_runs(a_changes, 1, "node-a's hook") == [
        ["master", "standalone", "1", "enable", "1"]
    ]
    assert _wait_runs(b_changes, 1, "node-b's hook") == [["shadow", "standalone", "1", "join", "1"]]

    a.kill()  # kill -9: a failover
    wait_role(b, "master", 2, timeout=20)
    assert _wait_runs(b_changes, 2, "node-b's hook as master")[1] == [
        "master", "shadow", "2", "failover", "1"
    ]  # fmt: skip
    assert _changes(b_before) == [["master", "shadow", "2", "failover", "1"]]

    a.start()  # the old master rejoins as the shadow of epoch 2
    wait_role(a, "shadow", 2, timeout=30)
    assert _wait_runs(a_changes, 2, "node-a's hook as shadow")[1] == [
        "shadow", "master", "2", "rejoin", "1"
    ]  # fmt: skip

    ha_cluster.watchdog.stop()  # (a master away this long would rightly be failed over)
    b.stop()  # a restart: nothing is run again ...
    b.start()
    b.wait_healthy()
    wait_for(lambda: _put(b, "after-restart") in (200, 201), 30, "node-b writable again", every=0.2)
    ha_cluster.wait_sync(b)
    with admin(b, timeout=60) as client:  # ... as the switch's run after it shows
        switched = client.post("/ha/switch-roles")
    assert switched.status_code == 200, switched.text
    wait_role(a, "master", 3, timeout=20)
    wait_role(b, "shadow", 3, timeout=20)
    assert _wait_runs(b_changes, 3, "node-b's hook after the switch") == [
        ["shadow", "standalone", "1", "join", "1"],
        ["master", "shadow", "2", "failover", "1"],
        ["shadow", "master", "3", "switch", "1"],
    ]
    assert _wait_runs(a_changes, 3, "node-a's hook after the switch") == [
        ["master", "standalone", "1", "enable", "1"],
        ["shadow", "master", "2", "rejoin", "1"],
        ["master", "shadow", "3", "switch", "1"],
    ]
    assert _changes(a_before) == [["master", "shadow", "3", "switch", "1"]]
    assert _changes(b_before) == [["master", "shadow", "2", "failover", "1"]]
    assert all(run[6] == "no-secret" for run in a_changes.runs() + b_changes.runs())


def test_a_failing_before_promote_hook_aborts_the_failover_until_it_succeeds(
    ha_cluster: HaCluster, tmp_path: Path
) -> None:
    a, b = ha_cluster.master, ha_cluster.shadow
    _, _ = _hooks(a, tmp_path)
    b_changes, b_before = _hooks(b, tmp_path)
    b_before.fail_with(1)
    ha_cluster.set_up()
    a.kill()
    started = time.monotonic()
    _wait_runs(b_before, 2, "the watchdog to send the promote twice", timeout=30)
    elapsed = time.monotonic() - started
    runs = len(b_before.runs())
    # The watchdog sends again after 2 x the takeover delay without word of a new master: the
    # hook runs once per command, never in a tight loop.
    assert runs <= elapsed / (2 * TAKEOVER_DELAY) + 2, f"{runs} runs in {elapsed:.1f}s"
    assert health_of(b)["role"] == "shadow" and health_of(b)["epoch"] == 1
    assert promotions(b) == []
    with admin(b) as client:
        alerts = client.get("/alerts").json()["alerts"]
    (failed,) = [x for x in alerts if x["name"] == "hook-failed"]
    print(f"\n{runs} aborted promotions in {elapsed:.1f}s; alert: {failed['message']}")
    assert failed["state"] == "active" and "aborted" in failed["message"]
    assert "no epoch was claimed" in failed["message"]
    assert "promotion of node-b to epoch 2 aborted" in b.text()

    b_before.fail_with(None)  # the hook works again: the next promote command goes through
    wait_role(b, "master", 2, timeout=30)
    assert_single_promotion(b)
    assert _wait_runs(b_changes, 2, "node-b's hook as master")[1] == [
        "master", "shadow", "2", "failover", "1"
    ]  # fmt: skip
    assert [run[1:5] for run in b_before.runs()][-1] == ["master", "shadow", "2", "failover"]


def test_a_switch_whose_before_promote_hook_fails_is_refused_and_the_master_keeps_writing(
    ha_cluster: HaCluster, tmp_path: Path
) -> None:
    a, b = ha_cluster.master, ha_cluster.shadow
    _hooks(a, tmp_path)
    b_changes, b_before = _hooks(b, tmp_path)
    b_before.fail_with(2)
    ha_cluster.set_up(watchdog=False)
    with admin(a, timeout=60) as client:
        refused = client.post("/ha/switch-roles")
    print(f"\n{refused.status_code}: {refused.text}")
    assert refused.status_code == 409, refused.text
    assert "aborted" in refused.json()["error"] and "exited 2" in refused.json()["error"]
    assert is_role(a, "master", 1) and is_role(b, "shadow", 1)
    assert _put(a, "still-writing") in (200, 201)
    assert promotions(a) == [] and len(b_before.runs()) == 1
    assert _changes(b_changes) == [["shadow", "standalone", "1", "join", "1"]]

    b_before.fail_with(None)
    ha_cluster.wait_sync(a)
    with admin(a, timeout=60) as client:
        switched = client.post("/ha/switch-roles")
    assert switched.status_code == 200, switched.text
    wait_role(b, "master", 2, timeout=20)


def test_an_instance_killed_while_its_hook_runs_runs_it_again_as_attempt_2(
    instance_process: Process, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    hook = tmp_path / "die-on-first.sh"
    hook.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2 $3 $4 $SHADOWLINE_HOOK_ATTEMPT" >> {runs}\n'
        '[ "$SHADOWLINE_HOOK_ATTEMPT" = 1 ] && kill -9 "$PPID"\n'
        "exit 0\n"
    )
    hook.chmod(0o755)
    instance_process.env["SHADOWLINE_ON_ROLE_CHANGE"] = str(hook)
    instance_process.start()
    instance_process.wait_healthy()
    with contextlib.suppress(httpx.HTTPError), admin(instance_process) as client:
        client.post("/ha/enable")  # the hook kills the instance, perhaps before it answers
    wait_for(lambda: not instance_process.running, 20, "the hook to kill the instance")
    instance_process.reap()
    instance_process.start()
    instance_process.wait_healthy()
    wait_for(lambda: len(runs.read_text().splitlines()) >= 2, 30, "the hook's second attempt")
    assert runs.read_text().splitlines() == [
        "master standalone 1 enable 1",
        "master standalone 1 enable 2",
    ]
    assert health_of(instance_process)["role"] in ("master", "fenced")
