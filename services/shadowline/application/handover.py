"""Switch roles, on the master: stop writes, wait until the shadow holds everything, promote it
with a signed command naming the fork, and rejoin it as its shadow.

A promote that was sent but not answered (or answered unauthenticated) may have landed: the
master then stays fenced until the new epoch is heard or the shadow answers that it is still
the shadow of this epoch, after the command has expired.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shadowline.domain import failover as rules
from shadowline.domain import signing
from shadowline.domain.errors import Conflict, PeerRefused, PeerUnreachable, Unavailable
from shadowline.domain.ha import HaRecord
from shadowline.domain.hooks import Cause
from shadowline.domain.promote import handover_command
from shadowline.domain.roles import FenceReason, Role

if TYPE_CHECKING:
    from shadowline.application.failover import Failover

log = logging.getLogger("shadowline.application.failover")


async def switch_roles(f: Failover, actor: str) -> dict[str, Any]:
    record = await _in_sync(f)
    assert record.shadow_url is not None
    shadow, epoch = record.shadow_instance, f.role.epoch
    started = time.monotonic()
    handing = f.role.state.fenced_by(FenceReason.HANDING_OVER, rules.handing_over(shadow))
    f.role.set(replace(handing, master_url=record.shadow_url))
    try:
        await _hand_over(f, record, actor, deadline=started + f.settings.takeover_delay)
    except (Conflict, Unavailable):
        if f.role.fence is not FenceReason.HANDOVER_UNKNOWN:  # certainly not promoted
            f.role.set(replace(f.role.state.unfenced(), master_url=None))
        raise
    # Promoted: from here on this instance rejoins; should recover() fail (the fork answer
    # lost), the lease watcher retries it instead of waiting on a handover that is done.
    rejoining = rules.rejoining_after_handover(shadow, epoch + 1)
    f.role.set(f.role.state.fenced_by(FenceReason.REJOINING, rejoining))
    result = await f.recover(record.shadow_url, shadow, Cause.SWITCH)
    took = time.monotonic() - started
    sentence = (
        f"roles switched: {shadow} is master in epoch {result['epoch']}, "
        f"{f.settings.instance} its shadow ({took:.2f}s without writes)"
    )
    log.info(sentence)
    f.publish(
        "failover.switched",
        {
            "step": "switched",
            "sentence": sentence,
            "from": f.settings.instance,
            "to": shadow,
            "epoch": result["epoch"],
            "seconds": took,
        },
    )
    return {**result, "new_master": shadow, "seconds": took}


async def _in_sync(f: Failover) -> HaRecord:
    """The record naming the shadow, if this is a writable master whose shadow is in sync."""
    record = f.ha.record
    if f.role.role != Role.MASTER or f.role.fence is not None:
        raise Conflict(f"switch roles runs on a writable master; this instance is {f.role.shown}")
    shadow = (await f.ha.status()).get("shadow")
    # Under a steady load the shadow is always a few events behind ("syncing"); in sync
    # mode it acknowledges every write, so the wait below is short and bounded.
    in_sync = shadow is not None and (
        shadow["state"] == "connected"
        or (shadow["state"] == "syncing" and f.gate.replication == "sync")
    )
    if not in_sync or record is None or not record.shadow_url:
        state = shadow["state"] if shadow else "absent"
        raise Conflict(f"the shadow is {state}, not in sync: switch roles refused")
    return record


async def _hand_over(f: Failover, record: HaRecord, actor: str, deadline: float) -> None:
    # Writes admitted before the fence are still queued in the writer: the fork is the head
    # once they have committed, so the shadow must have them all.
    fork = await f.writer.barrier()
    if not await f.gate.wait_acked(fork, deadline - time.monotonic()):
        raise Conflict(f"the shadow did not reach position {fork} in time: switch roles aborted")
    assert record.shadow_instance is not None and record.shadow_url is not None
    command = signing.sign(
        f.ha.secret(),
        handover_command(
            cluster=f.settings.cluster,
            shadow=record.shadow_instance,
            epoch=f.role.epoch,
            issued_at=time.time(),
            issued_by=f.settings.instance,
            actor=actor,
            fork=fork,
        ),
    )
    # The shadow drains, then runs its before-promote hook, before it answers.
    hook = f.settings.before_promote_timeout if f.settings.before_promote else 0.0
    peer = f.ha.peer(record.shadow_url, record.shadow_instance, timeout=10.0 + hook)
    try:
        await peer.call("POST", "/ha/peer/promote", command)
    except PeerRefused as error:
        raise Conflict(f"the shadow refused the handover: {error}") from error
    except PeerUnreachable as error:  # never sent: certainly not promoted
        raise Conflict(f"the shadow is not reachable, switch roles refused: {error}") from error
    except Unavailable as error:  # sent but unanswered (or not authenticated): it may have
        _outcome_unknown(f, record.shadow_instance, error)
        raise
    finally:
        await peer.close()


def _outcome_unknown(f: Failover, shadow: str | None, error: Exception) -> None:
    """The promote may have reached the shadow (or may still, delayed, within its window):
    stay fenced until its new epoch is heard (then rejoin it) or the command has expired and
    the shadow answers, authenticated, that it is still the shadow of this epoch."""
    # The shadow takes a command up to WINDOW after it was issued by its own clock (which may
    # differ from ours by as much again), then drains for up to the takeover delay.
    until = time.monotonic() + 2 * signing.WINDOW + f.settings.takeover_delay + 1
    sentence = rules.handover_unknown(shadow, error)
    f.role.set(f.role.state.fenced_by(FenceReason.HANDOVER_UNKNOWN, sentence, until))
    log.warning(sentence)
