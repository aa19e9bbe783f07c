"""What the HA screen says of a handover under way: a switch of roles reads as in progress, not
as a failure, until the old master has heard from its new master."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from shadowline.domain.events import Event
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.entrypoints.screen.panels import describe, handover

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


def test_the_handover_has_settled_once_the_new_master_was_heard_or_confirmed_it() -> None:
    heard = {"role": "shadow", "master": MASTER, "confirmed": False, "last_contact_age": 0.4}
    confirmed = {"role": "shadow", "master": MASTER, "confirmed": True, "last_contact_age": None}
    assert handover(RoleState(Role.SHADOW, 2), heard, switched_ago=3.0) is None
    assert handover(RoleState(Role.SHADOW, 2), confirmed, switched_ago=3.0) is None


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
