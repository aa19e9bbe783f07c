"""Several watchdogs on one cluster: what the others say, and when their word holds one off.

Every watchdog announces, per cluster, what it sees (`failover.watchdog` on monitoring, MACed
with the cluster's monitoring key like every monitoring message): when it last heard the
master, when its probe last found the master alive, whether it is probing or promoting. The
rule each one follows, as pure functions of the reports it holds and a monotonic `now`:

- Order: the live watchdogs of a cluster sort by a hash of (cluster, name), the same order for
  all of them, different per cluster (so the first-to-act role is spread over the watchdogs).
  The k-th one may probe only after the takeover delay plus k graces: the first acts at once.
- Hold off while another live watchdog reports the same master heard or alive by its probe
  less than a takeover delay ago, or says it probes (a delay after each report, but for
  `PROBING_CAP` delays from its first report of that probe at most: one whose probe hangs
  holds no one off for ever) or promotes (until its shadow is heard as master, but for
  `PROMOTE_HOLD` delays at most); a probe of our own that
  fails does not promote while another's recent probe found the master alive.
- Bounds against lies: a report holds off only from what it says, aged by its own delivery
  delay, and never beyond a takeover delay after it arrived (a promoting claim: the bound
  above, from the first report of it); replays are refused before they get here (sequence
  numbers per run, as for heartbeats). So a forged-then-replayed or stale report cannot stop
  a failover for ever; only a stream of fresh, authentic reports can, and one of those is a
  watchdog that really sees the master.
- With every other watchdog dead or cut off, nothing holds: the first live one in the order
  acts, late by its rank's graces at most. Two that still act at once send the same epoch to
  the same shadow, and the shadow takes a promotion for a newer epoch only, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:  # domain.watchdog imports this module: its Member is for the types only
    from shadowline.domain.watchdog import Member

GRACE: Final = 0.5  # of the takeover delay, per rank: more than a probe (a quarter) takes
PROBING_HOLD: Final = 1.0  # of the takeover delay: a peer's probe (a quarter, on a busy host more)
PROBING_CAP: Final = 2.0  # of the takeover delay, from the first report of one probe: at most
HEARD_MARGIN: Final = 0.1  # of the takeover delay: a peer that heard the master no later than
# this after us tells nothing new (heartbeats reach every watchdog within milliseconds)
PROMOTE_HOLD: Final = 2.5  # of the takeover delay: a peer resends its promote after two
LIVE: Final = 3.0  # announcement intervals: a peer not heard for longer is gone
MAX_PEERS: Final = 16  # reports kept per cluster: more watchdogs than that is a flood


@dataclass(frozen=True, slots=True)
class Report:
    """The last announcement of another watchdog, its times turned into this one's clock."""

    watchdog: str
    received: float
    interval: float
    master: str | None
    heard: float | None  # when it last heard the master's heartbeat
    alive: float | None  # when its probe last found the master answering as master
    phase: str
    promoting: tuple[str, int] | None  # (shadow, epoch) while it promotes
    promoting_since: float | None  # when this one first heard it promote that
    probing_since: float | None = None  # when this one first heard it probe that master


def _at(doc: dict[str, Any], key: str, received: float, delay: float) -> float | None:
    age = doc.get(key)
    if not isinstance(age, int | float) or isinstance(age, bool) or age < 0:
        return None
    return received - delay - float(age)


def report_of(doc: dict[str, Any], received: float, delay: float, before: Report | None) -> Report:
    """`doc` is an authentic, fresh announcement (schemas/monitoring/watchdog.json) received at
    monotonic `received`, `delay` wall-clock seconds after it was sent (clamped by the caller);
    raises KeyError, TypeError or ValueError when it is not the documented shape."""
    promoting = None
    raw = doc.get("promoting")
    if isinstance(raw, dict):
        promoting = (str(raw["shadow"]), int(raw["epoch"]))
    since = None
    if promoting is not None:
        same = before is not None and before.promoting == promoting
        since = before.promoting_since if same and before is not None else received
    master = doc.get("master")
    probing_since = None
    if doc["phase"] == "probing":
        again = before is not None and before.phase == "probing" and before.master == master
        probing_since = before.probing_since if again and before is not None else received
    return Report(
        watchdog=str(doc["watchdog"]),
        received=received,
        interval=float(doc["interval"]),
        master=str(master) if master is not None else None,
        heard=_at(doc, "master_heard", received, delay),
        alive=_at(doc, "master_alive", received, delay),
        phase=str(doc["phase"]),
        promoting=promoting,
        promoting_since=since,
        probing_since=probing_since,
    )


def order_key(cluster: str, watchdog: str) -> bytes:
    return hashlib.sha256(f"{cluster}\x00{watchdog}".encode()).digest()


def live(peers: dict[str, Report], now: float) -> list[Report]:
    return [p for p in peers.values() if now - p.received <= LIVE * p.interval]


def rank(cluster: str, me: str, peers: dict[str, Report], now: float) -> int:
    """How many live watchdogs come before this one in the cluster's order."""
    mine = order_key(cluster, me)
    return sum(1 for p in live(peers, now) if order_key(cluster, p.watchdog) < mine)


class Hold(NamedTuple):
    """Why this watchdog holds off, and until when (monotonic) at most."""

    reason: str
    until: float
    key: str  # the peer and the kind of hold: said once while it lasts


def _holds(p: Report, master: Member, epoch: int, now: float, delay: float) -> list[Hold]:
    found = []
    cap = p.received + delay  # one report never holds longer than this
    if (
        p.master == master.instance
        and p.heard is not None
        and p.heard > master.seen + HEARD_MARGIN * delay
    ):
        ago = now - p.heard
        found.append(
            Hold(
                f"watchdog {p.watchdog} heard master {master.instance} {ago:.1f}s ago",
                min(p.heard + delay, cap),
                f"{p.watchdog} heard",
            )
        )
    if p.master == master.instance and p.alive is not None:
        ago = now - p.alive
        found.append(
            Hold(
                f"watchdog {p.watchdog}'s probe found master {master.instance} alive {ago:.1f}s ago",
                min(p.alive + delay, cap),
                f"{p.watchdog} alive",
            )
        )
    if p.phase == "probing" and p.master == master.instance:
        found.append(
            Hold(
                f"watchdog {p.watchdog} is probing master {master.instance}",
                min(
                    p.received + PROBING_HOLD * delay,
                    (p.probing_since or p.received) + PROBING_CAP * delay,
                ),
                f"{p.watchdog} probing",
            )
        )
    if p.promoting is not None and p.promoting[1] > epoch and p.promoting_since is not None:
        shadow, new = p.promoting
        until = min(p.promoting_since + PROMOTE_HOLD * delay, p.received + delay)
        found.append(
            Hold(
                f"watchdog {p.watchdog} is promoting {shadow} to epoch {new}",
                until,
                f"{p.watchdog} promoting",
            )
        )
    return [h for h in found if now < h.until]


def hold(
    peers: dict[str, Report], master: Member, epoch: int, now: float, delay: float
) -> Hold | None:
    """The word of another live watchdog that holds this one off now, if any: the one that
    holds longest (waking before it ends only finds the next one)."""
    holds = [h for p in live(peers, now) for h in _holds(p, master, epoch, now, delay)]
    return max(holds, key=lambda h: h.until, default=None)


def remember(peers: dict[str, Report], report: Report) -> dict[str, Report]:
    """The reports with `report` in; the longest silent ones go beyond MAX_PEERS."""
    kept = {k: v for k, v in peers.items() if k != report.watchdog}
    kept[report.watchdog] = report
    while len(kept) > MAX_PEERS:
        del kept[min(kept, key=lambda k: kept[k].received)]
    return kept
