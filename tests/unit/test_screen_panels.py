"""What the HA screen says of a handover under way: a switch of roles reads as in progress, not
as a failure, until the old master has heard from its new master."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from shadowline.domain.events import Event
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.entrypoints.amqp.feed import Heard
from shadowline.entrypoints.screen.pages import environment
from shadowline.entrypoints.screen.panels import HANDOVER_SETTLES, describe, handover

MASTER = {"instance": "node-b", "url": "http://127.0.0.1:8082"}


def test_a_master_handing_over_is_shown_in_progress_with_its_sentence() -> None:
    state = RoleState(Role.MASTER).fenced_by(FenceReason.HANDING_OVER, "handing over to node-b")
    assert handover(state, {"role": "fenced"}) == "handing over to node-b"


def test_an_old_master_that_has_not_heard_its_new_master_yet_is_still_handing_over() -> None:
    status = {"role": "shadow", "master": MASTER, "confirmed": False, "last_contact_age": None}
    found = handover(RoleState(Role.SHADOW, 2), status, switched_ago=1.5)
    assert found == "becoming the shadow of node-b: waiting for its first contact"


def test_a_shadow_merely_restarted_and_not_yet_in_contact_is_no_handover() -> None:
    status = {"role": "shadow", "master": MASTER, "confirmed": False, "last_contact_age": None}
    assert handover(RoleState(Role.SHADOW, 2), status) is None
    assert handover(RoleState(Role.SHADOW, 2), status, switched_ago=600.0) is None


def shadow_of_b(**fields: Any) -> dict[str, Any]:
    """The old master's status once it is node-b's shadow: contacted, confirmed, caught up."""
    settled = {"confirmed": True, "last_contact_age": 0.3, "lag": {"events": 0, "seconds": 0.0}}
    return {"instance": "node-a", "role": "shadow", "master": MASTER, **settled, **fields}


def test_right_after_a_switch_the_old_master_is_handing_over_until_the_roles_settle() -> None:
    """As the walk of issue 13 found it: contacted, confirmed, one event behind (the new
    master's MasterPromoted), its last heartbeat still `fenced`."""
    state, just = RoleState(Role.SHADOW, 3), 1.0
    found = handover(state, shadow_of_b(lag={"events": 1, "seconds": 0.2}), just, "fenced")
    assert found == "becoming the shadow of node-b: catching up (1 events behind)"
    found = handover(state, shadow_of_b(confirmed=False), just, "fenced")
    assert found == "becoming the shadow of node-b: waiting for it to confirm this shadow"
    found = handover(state, shadow_of_b(), just, "fenced")
    assert found == "becoming the shadow of node-b: announcing its new role in its heartbeats"


def test_the_handover_has_settled_once_the_shadow_is_in_sync_and_its_heartbeat_says_so() -> None:
    state = RoleState(Role.SHADOW, 3)
    assert handover(state, shadow_of_b(), switched_ago=3.0, own_beat="shadow") is None
    assert handover(state, shadow_of_b(), switched_ago=3.0) is None  # no heartbeat shown
    behind = shadow_of_b(lag={"events": 4, "seconds": 1.0})
    assert handover(state, behind, switched_ago=HANDOVER_SETTLES + 1, own_beat="fenced") is None


def render(handing_over: str | None, **status: Any) -> str:
    """The live part of the screen, on the old master right after Switch Roles."""
    now = datetime.now(UTC)

    def beat(instance: str, role: str) -> Heard:
        return Heard(now, f"heartbeat.{instance}", {"instance": instance, "role": role, "epoch": 3})

    view = {
        "cluster": "walk13", "handover": handing_over, "alerts_active": [],
        "alerts_resolved": [], "role_changes": [], "role_log_unavailable": None,
        "watchdogs": [], "user": SimpleNamespace(csrf="t"), "can_act": False, "pending": False,
        "feed": SimpleNamespace(connected=True, received=9, malformed=0),
        "latest": [beat("node-a", "fenced"), beat("node-b", "master")],
        "heartbeats": [beat("node-a", "fenced"), beat("node-b", "master")], "events": [],
        "now": now, "status": {**shadow_of_b(), "epoch": 3, "position": 9, "version": "x",
                               "fenced": None, "maintenance": False, "shadow": None,
                               "replication": "async", **status},
    }  # fmt: skip
    return environment().get_template("_status.html").render(**view)


def test_the_old_masters_own_heartbeat_reads_handover_in_progress_not_fenced() -> None:
    page = render("becoming the shadow of node-b: catching up (1 events behind)")
    beats = page.split('id="latest-heartbeats"', 1)[1].split("</table>", 1)[0]
    assert "fenced" not in beats and "handover in progress" in beats
    assert "<td>master</td>" in beats  # node-b's row as it came
    assert 'id="handover"' in page and "Handover in progress: becoming the shadow" in page
    settled = render(None)  # the note gone: rows as they came
    assert "handover in progress" not in settled and "<td>fenced</td>" in settled


def test_a_master_fenced_by_its_lease_is_no_handover() -> None:
    state = RoleState(Role.MASTER).fenced_by(FenceReason.LEASE_LOST, "no heartbeat confirmed")
    assert handover(state, {"role": "fenced"}) is None


def _promoted(**data: object) -> Event:
    return Event(uuid4(), 9, 3, "MasterPromoted", None, None, None, data, {}, datetime.now(UTC))


def test_a_role_change_names_the_new_master_and_the_one_before() -> None:
    switched = {"epoch": 3, "previous_master": "node-b", "fork_position": 9}
    assert describe(_promoted(master="node-a", **switched, reason="switch roles")) == (
        "node-a became master in epoch 3, taking over from node-b at fork position 9 (switch roles)"
    )
    assert describe(_promoted(**switched)).startswith("new master in epoch 3, taking over from")
