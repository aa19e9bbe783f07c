"""The master's lease and fence as pure decisions: a function of (state, observation, now) that
returns what to do and the sentence that says why. application.failover executes them.

A master fences itself (acknowledges no write) when its lease runs out or it hears a newer
epoch, and lifts the fence only once no newer epoch exists: its peer says so, authenticated, or
no newer master has been heard for the takeover delay with heartbeats confirmed throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from shadowline.domain.roles import FenceReason, Role, RoleState

STARTING = "starting: checking the peer and the heartbeats for a newer epoch"
REJOINING = "a newer master exists: rejoining as its shadow"


def newer_epoch_heard(newest: int, epoch: int) -> str:
    return f"heard a master in epoch {newest}, newer than {epoch}"


def lease_lost(lease: float) -> str:
    return f"no heartbeat confirmed by the broker for {lease:.1f}s (lease)"


def handing_over(shadow: str | None) -> str:
    return f"handing over to {shadow}"


def handover_unknown(shadow: str | None, error: Exception) -> str:
    return f"handover to {shadow}: outcome unknown ({error})"


def rejoining_after_handover(shadow: str | None, epoch: int) -> str:
    return f"rejoining {shadow}, master in epoch {epoch}"


class Step(StrEnum):
    """What a lease check decided."""

    HOLD = "hold"  # nothing changes
    STOP = "stop"  # not a master any more: the lease watch ends
    FENCE = "fence"
    ASK_PEER = "ask-peer"  # decide again with the peer's answer
    RECOVER = "recover"  # a newer master exists: rejoin it as its shadow
    UNFENCE = "unfence"


@dataclass(frozen=True, slots=True)
class Master:
    """Another instance that claimed to be master (or fenced master), and where it is."""

    epoch: int
    role: str | None
    url: str | None
    instance: str | None


@dataclass(frozen=True, slots=True)
class LeaseSeen:
    """What the lease check observed. `peer` is the shadow's own authenticated answer (None if
    it gave none); only looked at when `asked`."""

    now: float  # monotonic seconds
    lease_valid: bool
    heard: Master | None  # the newest master heard within the takeover delay
    connected_for: float  # seconds heartbeats have been confirmed without a break
    asked: bool = False
    peer: Master | None = None


@dataclass(frozen=True, slots=True)
class LeaseDecision:
    step: Step
    state: RoleState  # the state to take (unchanged unless the decision changes it)
    sentence: str = ""
    rejoin: Master | None = None  # RECOVER: the newer master to rejoin


@dataclass(frozen=True, slots=True)
class Timing:
    instance: str
    lease: float
    takeover_delay: float


def check_lease(state: RoleState, seen: LeaseSeen, timing: Timing) -> LeaseDecision:
    """One turn of the master's lease watch."""
    if state.role != Role.MASTER:
        return LeaseDecision(Step.STOP, state)
    heard = seen.heard
    if state.fence is None:
        if heard is not None and heard.epoch > state.epoch:
            sentence = newer_epoch_heard(heard.epoch, state.epoch)
            return _fence(state, FenceReason.NEWER_EPOCH, sentence)
        if not seen.lease_valid:
            return _fence(state, FenceReason.LEASE_LOST, lease_lost(timing.lease))
        return LeaseDecision(Step.HOLD, state)
    if state.fence is FenceReason.HANDING_OVER or not seen.lease_valid:
        return LeaseDecision(Step.HOLD, state)  # switch_roles decides; no lease, no decision
    if heard is not None and heard.epoch > state.epoch:
        return LeaseDecision(Step.RECOVER, state, REJOINING, rejoin=heard)
    if not seen.asked:
        return LeaseDecision(Step.ASK_PEER, state)
    return _after_asking(state, seen, timing)


def _fence(state: RoleState, reason: FenceReason, sentence: str) -> LeaseDecision:
    return LeaseDecision(Step.FENCE, state.fenced_by(reason, sentence), sentence)


def _after_asking(state: RoleState, seen: LeaseSeen, timing: Timing) -> LeaseDecision:
    peer = seen.peer
    if peer is not None and peer.epoch > state.epoch:
        if peer.role not in ("master", "fenced"):
            return LeaseDecision(Step.HOLD, state)  # never unfence before its master is known
        return LeaseDecision(Step.RECOVER, state, REJOINING, rejoin=peer)
    if state.until is not None:  # a handover whose promote may have landed
        if seen.now < state.until or peer is None:
            return LeaseDecision(Step.HOLD, state)
        state = replace(state, master_url=None, until=None)  # not handed over after all
    me = f"{timing.instance} is master in epoch {state.epoch}"
    if peer is not None:
        sentence = (
            f"{me}: the peer is {peer.role} in epoch {peer.epoch} and the broker confirms "
            "heartbeats"
        )
        return LeaseDecision(Step.UNFENCE, state.unfenced(), sentence)
    if seen.connected_for >= timing.takeover_delay:
        sentence = f"{me}: no newer epoch heard for {seen.connected_for:.1f}s"
        return LeaseDecision(Step.UNFENCE, state.unfenced(), sentence)
    return LeaseDecision(Step.HOLD, state)


@dataclass(frozen=True, slots=True)
class Fork:
    """The newer master's answer to GET /ha/peer/fork: where our histories part."""

    instance: str
    position: int
    epoch: int
    chain: str  # hex


def divergence(fork: Fork, ours: bytes | None) -> str | None:
    """Why this old master may not rejoin at the fork (its log differs there), or None."""
    if ours is None or ours.hex() != fork.chain:
        return (
            f"our log differs from {fork.instance}'s at fork position {fork.position}: "
            "staying fenced for an operator"
        )
    return None


def rejoined_sentence(instance: str, fork: Fork, moved: int) -> str:
    return (
        f"{instance} rejoined {fork.instance} as shadow in epoch {fork.epoch} "
        f"at fork position {fork.position}; {moved} events quarantined"
    )
