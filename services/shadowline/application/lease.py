"""The master's lease watch: each turn observes the heartbeats (and, when fenced, the shadow),
asks domain.failover.check_lease what to do, and does it through the Failover.

A master fences itself when its lease runs out or it hears a newer epoch, and lifts the fence
only when no newer epoch exists; a master that (re)starts begins fenced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from shadowline.domain import failover as rules
from shadowline.domain.errors import ShadowlineError
from shadowline.domain.failover import LeaseDecision, Master, Step
from shadowline.domain.roles import FenceReason, Role

if TYPE_CHECKING:
    from shadowline.application.failover import Failover

log = logging.getLogger("shadowline.application.failover")


class Lease(Protocol):
    """What the lease watch reads of the heartbeats (application.liveness.Liveness)."""

    @property
    def connected_at(self) -> float | None: ...

    def lease_valid(self, now: float | None = None) -> bool: ...

    def newest_epoch_heard(self, within: float) -> tuple[int, dict[str, Any] | None]: ...

    async def wait_lease(self, within: float) -> bool: ...


async def watch(f: Failover, liveness: Lease, timing: rules.Timing, check_first: bool) -> None:
    if check_first:
        f.fence(FenceReason.STARTING, rules.STARTING)
    else:  # just became master (HA enabled, promoted): let the first heartbeat be confirmed
        await liveness.wait_lease(timing.lease)
    while True:
        # The lease runs out with time, not with an event: look four times a heartbeat.
        await asyncio.sleep(min(0.1, f.settings.heartbeat_interval / 4))
        try:
            decision = await _decide(f, liveness, timing)
            if decision.step is Step.STOP:
                return
            await _carry_out(f, decision)
        except ShadowlineError as error:
            if f.role.state.role is not Role.MASTER:  # a switch of roles rejoined it meanwhile
                log.info("the lease watch ends: this instance is %s now", f.role.state.role)
                return
            log.warning("still fenced: %s", error)


async def _decide(f: Failover, liveness: Lease, timing: rules.Timing) -> LeaseDecision:
    seen = _seen(liveness, timing)
    decision = rules.check_lease(f.role.state, seen, timing)
    if decision.step is Step.ASK_PEER:
        seen = replace(seen, asked=True, peer=await _peer_health(f))
        decision = rules.check_lease(f.role.state, seen, timing)
    return decision


async def _carry_out(f: Failover, decision: LeaseDecision) -> None:
    if decision.step is Step.FENCE:
        assert decision.state.fence is not None
        f.fence(decision.state.fence, decision.sentence)
    elif decision.step is Step.RECOVER:
        assert decision.rejoin is not None and decision.rejoin.url is not None
        await f.recover(decision.rejoin.url, decision.rejoin.instance)
    elif decision.step is Step.UNFENCE:
        await f.unfence(decision.sentence, decision.state)


def _seen(liveness: Lease, timing: rules.Timing) -> rules.LeaseSeen:
    now = time.monotonic()
    newest, beat = liveness.newest_epoch_heard(timing.takeover_delay)
    heard = None
    if beat is not None:
        heard = Master(newest, beat.get("role"), beat["url"], str(beat["instance"]))
    connected_at = liveness.connected_at
    connected_for = now - connected_at if connected_at is not None else 0.0
    return rules.LeaseSeen(now, liveness.lease_valid(), heard, connected_for)


async def _peer_health(f: Failover) -> Master | None:
    """The shadow's own answer: a signed probe with an authenticated answer, so a fake peer
    cannot hold us fenced."""
    record = f.ha.record
    if record is None or not record.shadow_url:
        return None
    peer = f.ha.peer(record.shadow_url, record.shadow_instance, timeout=1.0)
    try:
        answer = await peer.call("GET", "/health")
    except ShadowlineError:
        return None
    finally:
        await peer.close()
    if not isinstance(answer, dict) or not isinstance(answer.get("epoch"), int):
        return None
    return Master(answer["epoch"], answer.get("role"), record.shadow_url, record.shadow_instance)
