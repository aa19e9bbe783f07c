"""The watchdog's decisions as pure functions of (view, observation, now).

Each returns the new view, the actions to carry out, a sentence to log and publish, and the
step the sentence is (its routing key on monitoring). Time is a monotonic clock reading passed
in; nothing here sleeps, reads a clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

from shadowline.domain import watchdog_peers as peers


class Step(StrEnum):
    """What a decision is, as `failover.<step>` on monitoring (schemas/monitoring/failover.json)."""

    PROBING = "probing"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    REFUSED = "refused"
    MASTER_ALIVE = "master-alive"
    MAINTENANCE = "maintenance"
    DECISION = "decision"


class Refusal(StrEnum):
    """Why a failover that is needed is not done (the `reason` of the refusals counter)."""

    NO_LIVE_SHADOW = "no-live-shadow"
    SHADOW_LAGGING = "shadow-lagging"


@dataclass(frozen=True, slots=True)
class Member:
    instance: str
    role: str
    epoch: int
    url: str | None
    committed: int
    replication: str | None
    peer: str | None
    peer_url: str | None
    seen: float


@dataclass(frozen=True, slots=True)
class Probe:
    instance: str
    url: str


@dataclass(frozen=True, slots=True)
class Promote:
    shadow: str
    epoch: int
    master: str
    reason: str


@dataclass(frozen=True, slots=True)
class View:
    cluster: str
    started: float
    members: dict[str, Member] = field(default_factory=dict)
    phase: str = "watching"  # watching | probing | promoting | refused
    since: float = 0.0
    promoting: Promote | None = None
    maintenance: bool = False
    alive_at: float | None = None  # when the silent master last answered a probe as master
    refusal: Refusal | None = None  # why, while the phase is refused
    name: str = ""  # this watchdog's own name (its place in the order of watchdogs)
    peers: dict[str, peers.Report] = field(default_factory=dict)  # the other watchdogs' word
    held: str | None = None  # the key of the hold last said (each is said once)


Action = Probe | Promote


class Decision(NamedTuple):
    view: View
    actions: list[Action]
    sentence: str | None  # None: nothing to say (and then no step)
    step: Step | None = None


def _quiet(view: View) -> Decision:
    return Decision(view, [], None)


def observe(view: View, beat: dict[str, Any], now: float) -> View:
    """Record a heartbeat; a shadow's heartbeat also vouches that its master exists."""
    members = dict(view.members)
    name = str(beat["instance"])
    members[name] = Member(
        name,
        str(beat["role"]),
        int(beat["epoch"]),
        beat.get("url"),
        int(beat.get("committed") or 0),
        beat.get("replication"),
        beat.get("peer"),
        beat.get("peer_url"),
        now,
    )
    peer = beat.get("peer")
    if beat["role"] == "shadow" and peer and peer not in members:
        # Learned second-hand (e.g. after a restart of the watchdog): counted as seen now.
        # Its own shadow is not known from a claim: `peer` stays unset (see shadow_of).
        members[peer] = Member(
            peer, "master", int(beat["epoch"]), beat.get("peer_url"), 0, None, None, None, now
        )
    return replace(view, members=members)


def master_of(view: View) -> Member | None:
    masters = [m for m in view.members.values() if m.role in ("master", "fenced")]
    return max(masters, key=lambda m: (m.epoch, m.seen), default=None)


def shadow_of(view: View, master: Member) -> Member | None:
    """The master's shadow, if it is known without doubt. An instance that still says it is
    the shadow of this master may have been removed or replaced there (DELETE /ha/shadow): the
    master's own heartbeat names its shadow, and a claim it contradicts never counts. Two
    claimants the master did not settle are a doubt, and a doubt promotes no one (two watchdogs
    hearing them in another order would promote two instances into one epoch)."""
    claims = [m for m in view.members.values() if m.role == "shadow" and m.peer == master.instance]
    if master.peer is not None:
        claims = [m for m in claims if m.instance == master.peer]
    return claims[0] if len(claims) == 1 else None


def _promoting(view: View, promoting: Promote, now: float, takeover_delay: float) -> Decision:
    """A promote command is out: done once its shadow is heard as master in the new epoch."""
    promoted = view.members.get(promoting.shadow)
    if promoted and promoted.role == "master" and promoted.epoch >= promoting.epoch:
        return Decision(
            replace(view, phase="watching", promoting=None, since=now),
            [],
            f"{promoted.instance} is master in epoch {promoted.epoch}: failover complete",
            Step.PROMOTED,
        )
    if now - view.since > 2 * takeover_delay:  # no word from it: send again (idempotent by epoch)
        return Decision(
            replace(view, since=now),
            [promoting],
            (f"no heartbeat of {promoting.shadow} as master yet: promote command sent again"),
            Step.PROMOTING,
        )
    return _quiet(view)


def tick(view: View, now: float, takeover_delay: float) -> Decision:
    master = master_of(view)
    if view.maintenance or master is None:
        return _quiet(view)
    if view.phase == "promoting" and view.promoting is not None:
        return _promoting(view, view.promoting, now, takeover_delay)
    silent = now - master.seen
    if silent < takeover_delay:
        if view.phase != "watching":
            return Decision(
                replace(view, phase="watching", since=now),
                [],
                f"master {master.instance} is heard again",
                Step.MASTER_ALIVE,
            )
        return _quiet(view) if view.held is None else _quiet(replace(view, held=None))
    if now - view.started < takeover_delay:
        return _quiet(view)  # just started: give every instance one full delay to be heard
    if view.phase == "refused" and now - view.since > takeover_delay:
        view = replace(view, phase="watching")  # look again: the shadow may have caught up
    if view.phase == "watching":
        if not master.url or (
            view.alive_at is not None and now - view.alive_at < takeover_delay / 2
        ):
            return _quiet(view)  # it answered a probe just now: no probe storm
        if silent < takeover_delay * (1 + peers.GRACE * rank(view, now)):
            return _quiet(view)  # another watchdog comes first: its grace is not over
        held = _held(view, master, now, takeover_delay, "not probing")
        if held is not None:
            return held
        return Decision(
            replace(view, phase="probing", since=now, held=None),
            [Probe(master.instance, master.url)],
            f"no heartbeat from master {master.instance} for {silent:.1f}s: probing it directly",
            Step.PROBING,
        )
    return _quiet(view)


# Long only because each outcome of the probe is one early return with its sentence, in order.
def probed(
    view: View,
    instance: str,
    answer: dict[str, Any] | None,
    problem: str,
    now: float,
    takeover_delay: float,
    allow_data_loss: bool,
) -> Decision:
    """The result of a direct probe of the master: promote only if it is really gone."""
    master = master_of(view)
    if view.phase != "probing" or master is None or master.instance != instance:
        return _quiet(view)
    if answer is not None and answer.get("role") == "master":
        return Decision(
            replace(view, phase="watching", since=now, alive_at=now),
            [],
            f"master {instance} missed heartbeats but answers its probe as master: no failover",
            Step.MASTER_ALIVE,
        )
    why = problem if answer is None else f"it answers as {answer.get('role')}"
    shadow = shadow_of(view, master)
    if shadow is None or now - shadow.seen > takeover_delay:
        return Decision(
            replace(view, phase="refused", since=now, refusal=Refusal.NO_LIVE_SHADOW),
            [],
            f"master {instance} is gone ({why}) but no live shadow is known: cannot fail over",
            Step.REFUSED,
        )
    safe = master.replication == "sync" or shadow.committed >= master.committed
    if not safe and not allow_data_loss:
        behind = master.committed - shadow.committed
        return Decision(
            replace(view, phase="refused", since=now, refusal=Refusal.SHADOW_LAGGING),
            [],
            f"master {instance} is gone ({why}) but shadow {shadow.instance} is {behind} events "
            "behind acknowledged writes: not promoting (start the watchdog with --allow-data-loss "
            "to force)",
            Step.REFUSED,
        )
    held = _held(view, master, now, takeover_delay, f"{instance} is gone ({why}) but not promoting")
    if held is not None:
        return held._replace(view=replace(held.view, phase="watching", since=now))
    epoch = max(m.epoch for m in view.members.values()) + 1
    command = Promote(shadow.instance, epoch, instance, f"master {instance} gone: {why}")
    return Decision(
        replace(view, phase="promoting", since=now, promoting=command),
        [command],
        f"master {instance} is gone ({why}): promoting shadow {shadow.instance} to epoch {epoch}",
        Step.PROMOTING,
    )


def rank(view: View, now: float) -> int:
    """This watchdog's place among the live watchdogs of the cluster (0: it acts first)."""
    return peers.rank(view.cluster, view.name, view.peers, now)


def _held(view: View, master: Member, now: float, delay: float, what: str) -> Decision | None:
    """Held off by another watchdog's word (domain.watchdog_peers), said once per hold."""
    epoch = max(m.epoch for m in view.members.values())
    found = peers.hold(view.peers, master, epoch, now, delay)
    if found is None:
        return None
    if view.held == found.key:
        return _quiet(view)
    return Decision(replace(view, held=found.key), [], f"{what}: {found.reason}", Step.DECISION)


def heard_watchdog(view: View, doc: dict[str, Any], now: float, delay: float) -> View:
    """Record another watchdog's authentic, fresh announcement (`delay`: seconds in transit)."""
    name = str(doc["watchdog"])
    if name == view.name:
        return view  # our own, back from the exchange
    report = peers.report_of(doc, now, delay, view.peers.get(name))
    return replace(view, peers=peers.remember(view.peers, report))


def replace_maintenance(view: View, on: bool) -> View:
    return replace(view, maintenance=on, phase="watching" if on else view.phase)
