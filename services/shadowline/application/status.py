"""Who this instance is, built in one place: the heartbeat, role.changed and GET /ha start from
the same `Whoami`, so they never disagree on the role, the epoch or the peer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shadowline import __version__
from shadowline.application.roles import CurrentRole
from shadowline.domain.ha import HaRecord, shadow_state
from shadowline.domain.roles import Role, RoleState


@dataclass(slots=True)
class ShadowRelation:
    """A master's replication with its confirmed shadow, as the commit gate keeps it. The gate
    changes it and who-am-I reads it, so the heartbeat needs the gate's state, not the gate
    (whose lease rests on the heartbeats)."""

    enabled: bool = False  # a confirmed shadow exists
    mode: str = "async"
    acked: int = 0  # the shadow's acknowledged position
    generation: int = 0  # a new relation (configure) ends every wait on the old one
    announcing: bool = False  # the switch to async is being announced

    @property
    def replication(self) -> str | None:
        if not self.enabled:
            return None
        return "async" if self.announcing else self.mode


@dataclass(frozen=True, slots=True)
class Whoami:
    instance: str
    state: RoleState
    record: HaRecord | None
    position: int
    replication: str | None  # on a master with a confirmed shadow: sync or async
    acked: int  # on a master: the shadow's acknowledged position
    broker_node: str | None = None  # the RabbitMQ node (host:port) connected to now
    scheduled_switch: dict[str, Any] | None = None  # on a master that took one: the latest

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
            "broker": {"node": self.broker_node},
            "scheduled_switch": self.scheduled_switch,
        }


class Identity:
    """Who this instance is now, built from what holds each part: the role, the HA record as
    last loaded (HaService.load sets it), the writer's head and the shadow relation. Built before
    the liveness, the gate and the HA service, which all read it."""

    def __init__(
        self,
        instance: str,
        role: CurrentRole,
        position: Callable[[], int],
        relation: ShadowRelation,
        broker_node: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.instance = instance
        self._broker_node = broker_node
        self.role = role
        self.relation = relation
        self._position = position
        self.record: HaRecord | None = None
        # The latest scheduled switch of roles (application.switch_schedule sets it).
        self.scheduled: Callable[[], dict[str, Any] | None] = lambda: None

    def now(self) -> Whoami:
        relation = self.relation
        return Whoami(
            self.instance,
            self.role.state,
            self.record,
            self._position(),
            relation.replication,
            relation.acked,
            self._broker_node(),
            self.scheduled(),
        )

    def heartbeat(self) -> dict[str, Any]:
        return self.now().heartbeat()


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
