"""When a cluster's view needs its next `tick`, and what the watchdog announces about it.

A watchdog of 1,000 clusters cannot tick each one every few tens of milliseconds: it asks
`wake` for the earliest moment a tick could decide anything, sleeps until then (one timer per
cluster, not touched by heartbeats), and asks again after the tick. Waking early is harmless (the
tick says nothing); waking late would delay a failover, so every bound here is the earliest.
"""

from __future__ import annotations

from typing import Any

from shadowline.domain import watchdog_peers as peers
from shadowline.domain.watchdog import View, master_of, rank


def wake(view: View, now: float, delay: float) -> float | None:
    """The monotonic time of the next tick that may act; None: only a heartbeat can change
    anything (no master known, or maintenance)."""
    master = master_of(view)
    if view.maintenance or master is None:
        return None
    if view.phase == "promoting":
        return view.since + 2 * delay  # the resend of the promote command
    if view.phase in ("refused", "probing"):
        return view.since + delay  # look again; a probe outlives no takeover delay
    at = max(master.seen + delay * (1 + peers.GRACE * rank(view, now)), view.started + delay)
    if view.alive_at is not None:
        at = max(at, view.alive_at + delay / 2)
    if at <= now:
        epoch = max(m.epoch for m in view.members.values())
        found = peers.hold(view.peers, master, epoch, now, delay)
        if found is not None:
            at = found.until
    return at


def announcement(view: View, now: float, interval: float) -> dict[str, Any]:
    """What this watchdog says about the cluster (schemas/monitoring/watchdog.json, without
    the fields of the sending run: `boot`, `seq`, `at`)."""
    master = master_of(view)
    epochs = [m.epoch for m in view.members.values()]
    promoting = view.promoting if view.phase == "promoting" else None
    return {
        "cluster": view.cluster,
        "watchdog": view.name,
        "phase": view.phase,
        "maintenance": view.maintenance,
        "master": master.instance if master else None,
        "epoch": max(epochs) if epochs else None,
        "master_heard": _age(now, master.seen) if master else None,
        "master_alive": None if view.alive_at is None else _age(now, view.alive_at),
        "promoting": (
            None if promoting is None else {"shadow": promoting.shadow, "epoch": promoting.epoch}
        ),
        "interval": interval,
    }


def _age(now: float, then: float) -> float:
    return round(max(0.0, now - then), 3)
