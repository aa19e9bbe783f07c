"""Would a failover succeed now? Pure checks of what an instance observed (GET /ha/preflight,
gathered by application.preflight): each a verdict and a sentence an operator can act on.

The checks of what is measured by reaching out (clocks, versions, broker, the peer's HTTP) are
in domain.preflight_reach. Every input is a value observed at one moment; ages and clock offsets are in seconds, computed
by the caller from the clocks it passes in, so each rule is a function of its arguments only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shadowline.domain import signing
from shadowline.domain.ha import timing_problem

WATCHDOG_GONE: Final = 3  # announcement intervals without one: gone (schemas/monitoring/watchdog)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def doc(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def verdict(checks: Sequence[Check]) -> dict[str, Any]:
    """GET /ha/preflight's answer: ok only when every check is."""
    return {"ok": all(c.ok for c in checks), "checks": [c.doc() for c in checks]}


def _s(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.1f} s"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# -- the role ------------------------------------------------------------------------------------


def role_check(role: str, epoch: int, peer: str | None, peer_url: str | None) -> Check:
    """Which side answers: the master judges the pair, a shadow answers from its side."""
    if role == "master":
        return Check("role", True, f"this instance is the master in epoch {epoch}")
    if role == "shadow":
        return Check(
            "role",
            True,
            f"this instance is the shadow of {peer} in epoch {epoch}: the checks are its view "
            f"of the pair (ask the master, {peer_url}, for the master's view)",
        )
    if role == "fenced":
        return Check(
            "role",
            False,
            "this master is fenced (it may not write): a failover may be under way; look at "
            "`shadowline ha status` on both instances",
        )
    return Check(
        "role",
        False,
        f"HA is not enabled here ({role}): there is nothing to fail over to; "
        "set it up with `shadowline ha setup`",
    )


# -- the shadow ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sync:
    """The pair's replication as one side sees it (GET /ha's fields)."""

    on_master: bool
    peer: str | None  # the shadow (on a master), the master (on a shadow)
    state: str | None  # on a master: pending, syncing, connected, lost; on a shadow: None
    confirmed: bool
    lag_events: int | None
    lag_seconds: float | None
    heard_age: float | None  # seconds since the peer last reported (or was last in contact)
    replication: str | None


def sync_of(status: Mapping[str, Any], lag_seconds: Any = None) -> Sync:
    """The replication as GET /ha's answer (`status`) tells it; `lag_seconds`: on a master,
    the shadow's own figure (its signed answer), which the master has no other way to know."""
    if status.get("role") != "shadow":
        shadow = status.get("shadow") or {}
        return Sync(
            on_master=True,
            peer=shadow.get("instance"),
            state=shadow.get("state"),
            confirmed=shadow.get("state") not in (None, "pending"),
            lag_events=shadow.get("lag_events"),
            lag_seconds=float(lag_seconds) if isinstance(lag_seconds, int | float) else None,
            heard_age=shadow.get("last_seen_age"),
            replication=status.get("replication"),
        )
    master, lag = status.get("master") or {}, status.get("lag") or {}
    return Sync(
        on_master=False,
        peer=master.get("instance"),
        state=None,
        confirmed=bool(status.get("confirmed")),
        lag_events=lag.get("events"),
        lag_seconds=lag.get("seconds"),
        heard_age=status.get("last_contact_age"),
        replication=status.get("replication"),
    )


def shadow_check(sync: Sync, lost_after: float) -> Check:
    """In sync: heard within `lost_after` (the takeover delay), confirmed, and holding every
    acknowledged write (sync replication, or nothing behind): what a watchdog promotes."""
    who = "shadow" if sync.on_master else "this shadow"
    lag = f"{sync.lag_events if sync.lag_events is not None else '?'} events, " + _s(
        sync.lag_seconds
    )
    if sync.peer is None:
        return Check(
            "shadow",
            False,
            "no shadow has joined this master: a failover has nobody to promote "
            "(join one: `shadowline ha join --url SHADOW --master-url MASTER`)",
        )
    if sync.state == "pending" or not sync.confirmed:
        named = f"shadow {sync.peer}" if sync.on_master else f"this shadow of {sync.peer}"
        return Check(
            "shadow",
            False,
            f"{named} is not confirmed by the master yet (or still copying its history): "
            "confirm it (`shadowline ha confirm` on the master)",
        )
    if sync.heard_age is None or sync.heard_age > lost_after:
        other = f"shadow {sync.peer}" if sync.on_master else f"master {sync.peer}"
        return Check(
            "shadow",
            False,
            f"{other} not heard for {_s(sync.heard_age)} (the takeover delay is "
            f"{lost_after:g} s): it is down or cut off, and a failover now has no shadow known "
            "to be in sync; start it, or look at its log",
        )
    if sync.lag_events and sync.replication != "sync":
        return Check(
            "shadow",
            False,
            f"{who} is {lag} behind in {sync.replication or 'no'} replication: a watchdog "
            "refuses to promote it (acknowledged writes would be lost) until it has caught up",
        )
    named = f"shadow {sync.peer}" if sync.on_master else f"this shadow (of {sync.peer})"
    return Check(
        "shadow",
        True,
        f"{named} in sync ({sync.replication} replication): {lag} behind, "
        f"heard {_s(sync.heard_age)} ago",
    )


# -- the watchdogs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchdogSeen:
    """The last authenticated word of one watchdog (announcement or failover step)."""

    name: str
    age: float  # seconds since it was received
    interval: float | None  # its announcement interval (its takeover delay), if it said
    maintenance: bool
    phase: str


def live(watchdog: WatchdogSeen, default_interval: float) -> bool:
    return watchdog.age <= WATCHDOG_GONE * (watchdog.interval or default_interval)


def watchdog_check(
    seen: Sequence[WatchdogSeen], maintenance: bool, default_interval: float
) -> Check:
    if maintenance:
        return Check(
            "watchdog",
            False,
            "maintenance mode is on: the watchdogs do not fail over "
            "(`shadowline ha maintenance off` on the master resumes automatic failover)",
        )
    alive = [w for w in seen if live(w, default_interval)]
    if not seen:
        return Check(
            "watchdog",
            False,
            "no watchdog heard since this instance joined monitoring: none runs for this "
            "cluster, or its messages fail authentication (another cluster secret, or a clock "
            f"more than {signing.WINDOW:.0f} s off); start one (`shadowline watchdog`)",
        )
    if not alive:
        last = ", ".join(f"{w.name} {w.age:.0f} s ago" for w in seen)
        return Check(
            "watchdog",
            False,
            f"no watchdog heard within {WATCHDOG_GONE} announcement intervals (last: {last}): "
            "restart one (`shadowline watchdog`)",
        )
    ready = [w for w in alive if not w.maintenance and w.phase != "refused"]
    words = ", ".join(f"{w.name} {w.phase} {w.age:.1f} s ago" for w in alive)
    if not ready:
        return Check(
            "watchdog",
            False,
            f"every live watchdog holds back ({words}; maintenance or a refused failover): "
            "see `shadowline watch` or the HA screen",
        )
    return Check("watchdog", True, f"{len(alive)} watchdog(s) heard: {words}")


# -- the timing rule -----------------------------------------------------------------------------


def timing_check(
    leases: Sequence[tuple[str, float, float]], delays: Sequence[tuple[str, float]]
) -> Check:
    """The rule settings check at start (domain.ha.timing_problem), across processes: every
    instance's lease + margin (`leases`: who, lease, margin) against every takeover delay the
    watchdogs and the instances use (`delays`: who, seconds)."""
    for who, lease, margin in leases:
        for whose, delay in delays:
            problem = timing_problem(lease, margin, delay)
            if problem is not None:
                return Check("timing", False, f"{problem}: {who}'s lease against {whose}'s delay")
    shown = ", ".join(f"{who} {lease:g} s + {margin:g} s" for who, lease, margin in leases)
    least = min(delays, key=lambda d: d[1])
    return Check(
        "timing",
        True,
        f"lease + margin ({shown}) < takeover delay (shortest: {least[0]}'s {least[1]:g} s)",
    )
