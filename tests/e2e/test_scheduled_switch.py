"""A scheduled switch of roles with real processes: taken (202), shown in GET /ha, run when
due as the lossless handover with its outcome kept; and one cancelled, with every refusal (a
time in the past, too far ahead, without an offset, a second schedule, on the shadow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.e2e import failover_fixtures
from tests.e2e.failover_fixtures import HaCluster, admin, events, wait_for, wait_role
from tests.e2e.test_cli import shadowline

ha_cluster = failover_fixtures.ha_cluster


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _scheduled(process: Any) -> dict[str, Any] | None:
    with admin(process) as client:
        response = client.get("/ha")
    assert response.status_code == 200, response.text
    found: dict[str, Any] | None = response.json()["scheduled_switch"]
    return found


def _ended(process: Any) -> dict[str, Any] | None:
    shown = _scheduled(process)
    return shown if shown is not None and shown["state"] not in ("scheduled", "running") else None


def test_a_scheduled_switch_runs_when_due_and_its_outcome_is_kept(ha_cluster: HaCluster) -> None:
    old, new = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up()
    with admin(old) as client:
        response = client.post("/ha/switch-roles", json={"at": _in(4)})
    assert response.status_code == 202, response.text
    taken = response.json()
    print(f"\nscheduled: {taken}")
    assert taken["state"] == "scheduled" and taken["requested_by"] == "admin"
    assert taken["reason"] is None and taken["finished_at"] is None
    assert _scheduled(old) == taken, "GET /ha shows the schedule"
    assert _scheduled(new) is None, "the schedule is the master's own"

    wait_role(new, "master", 2, timeout=30)
    wait_role(old, "shadow", 2, timeout=30)
    done = wait_for(lambda: _ended(old), 15, "the scheduled switch's outcome")
    print(f"afterwards on the old master: {done}")
    assert done["state"] == "done", done
    assert "node-b is master in epoch 2" in (done["reason"] or "")
    assert done["finished_at"] is not None
    audited = [e for e in events(new) if e["type"] == "SwitchScheduled"]
    assert len(audited) == 1 and audited[0]["metadata"]["actor"] == "admin", audited
    promotion = [e for e in events(new) if e["type"] == "MasterPromoted"]
    assert len(promotion) == 1 and promotion[0]["data"]["issued_by"] == "node-a"


def test_a_scheduled_switch_is_cancelled_and_every_bad_request_refused(
    ha_cluster: HaCluster,
) -> None:
    master, shadow = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up(watchdog=False)
    bad = {
        "past": {"at": _in(-60)},
        "too far": {"at": _in(8 * 86400)},
        "no offset": {"at": datetime.now().replace(microsecond=0).isoformat()},
        "not a time": {"at": "tomorrow"},
        "not a string": {"at": 12},
        "unknown field": {"at": _in(3600), "now": True},
    }
    with admin(master) as client:
        for what, body in bad.items():
            refused = client.post("/ha/switch-roles", json=body)
            print(f"\n{what}: {refused.status_code} {refused.text}")
            assert refused.status_code == 422, (what, refused.text)
        assert client.delete("/ha/switch-roles").status_code == 409, "nothing to cancel yet"
    assert _scheduled(master) is None

    # The CLI: --at +1h, then a second schedule refused (409: exit 1), then --cancel.
    taken = shadowline(master, "ha", "switch-roles", "--at", "+1h", "--json")
    assert taken.exit_code == 0, taken.output
    doc = orjson.loads(taken.output)
    at = datetime.fromisoformat(doc["at"].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < at - datetime.now(UTC) <= timedelta(hours=1)
    second = shadowline(master, "ha", "switch-roles", "--at", "+2h")
    print(f"second schedule: {second.exit_code} {second.output}")
    assert second.exit_code != 0 and "already scheduled" in second.output
    with admin(shadow) as client:
        on_shadow = client.post("/ha/switch-roles", json={"at": _in(600)})
    assert on_shadow.status_code == 409 and on_shadow.json()["master"] == master.url
    cancelled = shadowline(master, "ha", "switch-roles", "--cancel")
    print(f"cancel: {cancelled.output}")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
    shown = _scheduled(master)
    assert shown is not None and shown["state"] == "cancelled", shown
    assert shown["reason"] == "cancelled by admin" and shown["at"] == doc["at"]
    again = shadowline(master, "ha", "switch-roles", "--cancel")
    assert again.exit_code != 0 and "no switch of roles is scheduled" in again.output
    audit = [e["type"] for e in events(master) if e["type"].startswith("Switch")]
    assert audit == ["SwitchScheduled", "SwitchCancelled"], audit
    with admin(master) as client:
        assert client.get("/ha").json()["role"] == "master", "cancelled: nothing switched"
