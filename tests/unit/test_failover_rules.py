"""The master's lease, fence and promotion as pure decisions (domain.failover, domain.promote),
and the one holder of the role with its change signal (application.roles)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from shadowline.application.roles import CurrentRole
from shadowline.domain import signing
from shadowline.domain.errors import Forbidden
from shadowline.domain.failover import (
    STARTING,
    Fork,
    LeaseSeen,
    Master,
    Step,
    Timing,
    check_lease,
    divergence,
)
from shadowline.domain.promote import (
    PromoteCommand,
    expired_while_draining,
    fork_mismatch,
    master_promoted,
)
from shadowline.domain.roles import FenceReason, Role, RoleState

TIMING = Timing("node-a", lease=1.2, takeover_delay=2.0)
MASTER = RoleState(Role.MASTER, 1)
FENCED = MASTER.fenced_by(FenceReason.STARTING, STARTING)
NEWER = Master(2, "master", "http://node-b:8080", "node-b")


def seen(**overrides: Any) -> LeaseSeen:
    values: dict[str, Any] = {
        "now": 100.0,
        "lease_valid": True,
        "heard": None,
        "connected_for": 0.0,
    }
    return LeaseSeen(**{**values, **overrides})


def test_a_master_with_a_lease_and_no_newer_epoch_heard_holds() -> None:
    assert check_lease(MASTER, seen(), TIMING).step is Step.HOLD


def test_a_master_whose_lease_ran_out_fences_itself_saying_so() -> None:
    decision = check_lease(MASTER, seen(lease_valid=False), TIMING)
    assert (decision.step, decision.state.fence) == (Step.FENCE, FenceReason.LEASE_LOST)
    assert decision.sentence == "no heartbeat confirmed by the broker for 1.2s (lease)"
    assert decision.state.fenced == decision.sentence and not decision.state.writable


def test_a_master_that_hears_a_newer_epoch_fences_itself_before_looking_at_its_lease() -> None:
    decision = check_lease(MASTER, seen(lease_valid=False, heard=NEWER), TIMING)
    assert (decision.step, decision.state.fence) == (Step.FENCE, FenceReason.NEWER_EPOCH)
    assert decision.sentence == "heard a master in epoch 2, newer than 1"


def test_a_fenced_master_that_hears_a_newer_master_rejoins_it() -> None:
    decision = check_lease(FENCED, seen(heard=NEWER), TIMING)
    assert (decision.step, decision.rejoin) == (Step.RECOVER, NEWER)


def test_a_fenced_master_without_a_lease_decides_nothing() -> None:
    assert check_lease(FENCED, seen(lease_valid=False, heard=NEWER), TIMING).step is Step.HOLD


def test_a_master_handing_over_is_left_to_the_switch_of_roles() -> None:
    handing = MASTER.fenced_by(FenceReason.HANDING_OVER, "handing over to node-b")
    assert check_lease(handing, seen(heard=NEWER), TIMING).step is Step.HOLD


def test_a_fenced_master_asks_its_peer_before_lifting_the_fence() -> None:
    assert check_lease(FENCED, seen(connected_for=5.0), TIMING).step is Step.ASK_PEER


def test_a_fenced_master_whose_peer_is_in_its_epoch_unfences_saying_why() -> None:
    peer = Master(1, "shadow", "http://node-b:8080", "node-b")
    decision = check_lease(FENCED, seen(asked=True, peer=peer), TIMING)
    assert decision.step is Step.UNFENCE and decision.state.writable
    assert decision.sentence == (
        "node-a is master in epoch 1: the peer is shadow in epoch 1 and the broker confirms "
        "heartbeats"
    )


def test_a_fenced_master_whose_peer_is_master_of_a_newer_epoch_rejoins_the_peer() -> None:
    peer = Master(2, "master", "http://node-b:8080", "node-b")
    decision = check_lease(FENCED, seen(asked=True, peer=peer), TIMING)
    assert (decision.step, decision.rejoin) == (Step.RECOVER, peer)


def test_a_newer_epoch_whose_master_is_not_known_keeps_the_master_fenced() -> None:
    peer = Master(2, "shadow", "http://node-b:8080", "node-b")
    assert check_lease(FENCED, seen(asked=True, peer=peer), TIMING).step is Step.HOLD


def test_a_silent_peer_lifts_the_fence_only_after_the_takeover_delay_of_confirmed_beats() -> None:
    early = check_lease(FENCED, seen(asked=True, connected_for=1.9), TIMING)
    late = check_lease(FENCED, seen(asked=True, connected_for=2.5), TIMING)
    assert (early.step, late.step) == (Step.HOLD, Step.UNFENCE)
    assert late.sentence == "node-a is master in epoch 1: no newer epoch heard for 2.5s"


def test_a_handover_of_unknown_outcome_stays_fenced_until_the_promote_has_expired() -> None:
    unknown = replace(
        MASTER.fenced_by(
            FenceReason.HANDOVER_UNKNOWN, "handover to node-b: outcome unknown", 130.0
        ),
        master_url="http://node-b:8080",
    )
    peer = Master(1, "shadow", "http://node-b:8080", "node-b")
    before = check_lease(unknown, seen(now=120.0, asked=True, peer=peer), TIMING)
    silent = check_lease(unknown, seen(now=140.0, asked=True, connected_for=9.0), TIMING)
    after = check_lease(unknown, seen(now=140.0, asked=True, peer=peer), TIMING)
    assert (before.step, silent.step, after.step) == (Step.HOLD, Step.HOLD, Step.UNFENCE)
    assert after.state == MASTER  # not handed over after all: no master named, no deadline


def test_an_instance_no_longer_master_stops_watching_its_lease() -> None:
    assert check_lease(RoleState(Role.SHADOW, 2), seen(), TIMING).step is Step.STOP


def test_a_fenced_master_is_shown_fenced_and_says_why() -> None:
    assert (FENCED.shown, FENCED.fenced, MASTER.shown, MASTER.fenced) == (
        "fenced",
        STARTING,
        "master",
        None,
    )
    # the members are StrEnums, equal to the words they stand for (mypy sees no overlap)
    assert Role.MASTER == "master" and FenceReason.LEASE_LOST == "lease-lost"  # type: ignore[comparison-overlap]


def test_an_old_master_whose_log_differs_at_the_fork_may_not_rejoin() -> None:
    fork = Fork("node-b", 7, 2, "ab" * 32)
    assert divergence(fork, bytes.fromhex("ab" * 32)) is None
    assert divergence(fork, b"\x00" * 32) == (
        "our log differs from node-b's at fork position 7: staying fenced for an operator"
    )
    assert divergence(fork, None) is not None


def _command(**fields: Any) -> PromoteCommand:
    doc = {
        "type": "promote",
        "cluster": "prod",
        "shadow": "node-b",
        "epoch": 2,
        "previous_epoch": 1,
        "command_id": str(uuid.uuid4()),
        "issued_at": time.time(),
        "issued_by": "watchdog-1",
        "reason": "master node-a gone",
        **fields,
    }
    return PromoteCommand.parse(signing.sign("secret", doc))


def test_a_promote_command_for_another_instance_or_cluster_is_refused() -> None:
    check: dict[str, Any] = {
        "now": time.time(),
        "epoch": 1,
        "cluster": "prod",
        "instance": "node-b",
    }
    _command().verify("secret", **check)
    with pytest.raises(Forbidden, match="not for this instance"):
        _command(shadow="node-c").verify("secret", **check)
    with pytest.raises(Forbidden, match="cluster"):
        _command(cluster="test").verify("secret", **check)
    with pytest.raises(Forbidden, match="not newer than epoch 2"):
        _command().verify("secret", **{**check, "epoch": 2})


def test_the_master_promoted_event_names_who_became_master_and_who_was_before() -> None:
    kind, data, _ = master_promoted(_command(), fork=9, previous_master="node-a", via="broker")
    assert kind == "MasterPromoted"
    assert (data["master"], data["previous_master"], data["epoch"]) == ("node-b", "node-a", 2)


def test_a_promote_command_that_is_not_an_object_is_refused_when_parsed() -> None:
    with pytest.raises(Forbidden, match="not an object"):
        PromoteCommand.parse(["promote"])


def test_a_promote_command_held_back_past_its_window_expires_while_draining() -> None:
    command = _command()
    assert expired_while_draining(command, time.time()) is None
    assert expired_while_draining(command, time.time() + signing.WINDOW + 1) is not None


def test_a_handover_promote_takes_effect_only_at_the_position_it_names() -> None:
    assert fork_mismatch(_command(), 5) is None  # a failover names no position
    assert fork_mismatch(_command(fork_position=5), 5) is None
    refused = fork_mismatch(_command(fork_position=7), 6)
    assert str(refused) == "the master handed over at position 7, this shadow is at 6"


async def test_a_waiter_on_the_role_wakes_when_the_role_changes_without_polling() -> None:
    role = CurrentRole(MASTER)
    waiter = asyncio.create_task(role.wait_for(lambda state: not state.writable, timeout=5))
    await asyncio.sleep(0)
    role.set(FENCED)
    assert await asyncio.wait_for(waiter, 1)
    assert (role.fenced, role.shown, role.epoch) == (STARTING, "fenced", 1)


async def test_a_wait_on_the_role_gives_up_after_its_timeout() -> None:
    role = CurrentRole(MASTER)
    assert not await role.wait_for(lambda state: state.role == Role.SHADOW, timeout=0.05)
