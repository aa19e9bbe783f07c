"""Who this instance is, built in one place: the heartbeat, role.changed and GET /ha start from
the same `Whoami`, so they never disagree on the role, the epoch or the peer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from shadowline import __version__
from shadowline.domain.ha import HaRecord, shadow_state
from shadowline.domain.roles import Role, RoleState


class Replication(Protocol):
    """What the master's commit gate says of replication (application.gate.CommitGate)."""

    @property
    def replication(self) -> str | None: ...

    @property
    def acked(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Whoami:
    instance: str
    state: RoleState
    record: HaRecord | None
    position: int
    replication: str | None  # on a master with a confirmed shadow: sync or async
    acked: int  # on a master: the shadow's acknowledged position

    @property
    def master(self) -> bool:
        return self.state.role == Role.MASTER

    def heartbeat(self) -> dict[str, Any]:
        """What the instance says about itself in each heartbeat (application.liveness adds
        the cluster, its URL, the sequence and the time)."""
        peer, peer_url = self.record.peer() if self.record is not None else (None, None)
        return {
            "instance": self.instance,
            "role": self.state.shown,
            "epoch": self.state.epoch,
            "committed": self.position,
            "applied": self.position,
            "replication": self.replication if self.master else None,
            "acked": self.acked if self.master else None,
            "peer": peer,
            "peer_url": peer_url,
            "maintenance": bool(self.record and self.record.maintenance),
        }

    def role_changed(self, sentence: str) -> dict[str, Any]:
        """The body of role.changed."""
        return {
            "instance": self.instance,
            "role": self.state.shown,
            "epoch": self.state.epoch,
            "position": self.position,
            "sentence": sentence,
        }

    def status(self) -> dict[str, Any]:
        """The part of GET /ha every role has (HaService.status adds the peer's side)."""
        return {
            "instance": self.instance,
            "role": self.state.shown,
            "epoch": self.state.epoch,
            "position": self.position,
            "version": __version__,
            "fenced": self.state.fenced,
            "maintenance": bool(self.record and self.record.maintenance),
            "replication": None,
            "shadow": None,
            "master": None,
        }


@dataclass(frozen=True, slots=True)
class ShadowSeen:
    """What a master knows of its shadow from its reports (kept in memory by HaService)."""

    seen: float | None  # monotonic time of the last report
    position: int
    diverged: dict[str, Any] | None


def shadow_doc(
    me: Whoami, shadow: ShadowSeen, lost_after: float, now: float | None = None
) -> dict[str, Any] | None:
    """GET /ha's `shadow`, on a master that has one."""
    record = me.record
    if not me.master or record is None or not record.shadow_instance:
        return None
    now = time.monotonic() if now is None else now
    age = None if shadow.seen is None else now - shadow.seen
    position = max(shadow.position, record.shadow_position or 0)
    state = shadow_state(record.shadow_state or "pending", position, age, me.position, lost_after)
    return {
        "instance": record.shadow_instance,
        "url": record.shadow_url,
        "state": state,
        "position": position,
        "lag_events": max(0, me.position - position),
        "last_seen_age": age,
        "diverged": shadow.diverged,
    }


def master_side(record: HaRecord, replica: Any) -> dict[str, Any]:
    """GET /ha's fields of a shadow: its master and how far behind it is."""
    return {
        "replication": replica.replication if replica else None,
        "master": {"instance": record.master_instance, "url": record.master_url},
        "lag": {
            "events": replica.lag_events() if replica else None,
            "seconds": replica.lag_seconds() if replica else None,
        },
        "last_contact_age": replica.contact_age() if replica else None,
        "confirmed": bool(replica and replica.confirmed.is_set()),
    }
