"""High-availability records and rules: what the instance's database holds of its role and its
peer, a role change as one unit, the shadow's status and the version handshake."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shadowline.domain.events import Event
from shadowline.domain.roles import Role


@dataclass(frozen=True, slots=True)
class HaRecord:
    """The instance's role, epoch and what it knows of its peer, as stored."""

    role: str
    epoch: int
    auto_confirm: bool
    master_instance: str | None
    master_url: str | None
    shadow_instance: str | None
    shadow_url: str | None
    shadow_state: str | None
    shadow_position: int | None
    shadow_seen_at: datetime | None
    maintenance: bool = False

    def peer(self) -> tuple[str | None, str | None]:
        """The other instance of the pair (name, URL) as this one's role sees it."""
        if self.role == Role.MASTER:
            return self.shadow_instance, self.shadow_url
        if self.role == Role.SHADOW:
            return self.master_instance, self.master_url
        return None, None


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A change of role, committed as one store transaction (adapters.ha_repo.change_role):
    a promotion fences the old epoch, moves the relay cursor, takes the role and appends
    MasterPromoted; a recovery quarantines what was written after the fork and takes the
    shadow's role; enabling HA takes the master's role and appends HaEnabled. All or nothing:
    a crash in between leaves nothing to repair."""

    role: Role
    expect: frozenset[Role]  # compare-and-set: the role it must still have
    epoch: int | None = None  # the new epoch, if it changes
    ha: Mapping[str, Any] = field(default_factory=dict)  # ha_state columns to set
    quarantine_after: int | None = None  # the fork: move later events to quarantine
    fence: int | None = None  # refuse appends of epochs older than this from now on
    relay_cursor: int | None = None  # publish from here on (forced, even backwards)
    event: Event | None = None  # appended at the head (its position is head + 1)
    # Why (domain.hooks.Cause): recorded with the change for the role-change hook.
    cause: str | None = None


def shadow_state(
    stored: str,
    position: int | None,
    seen_age: float | None,
    master_position: int,
    lost_after: float,
) -> str:
    """'pending' until confirmed; then 'lost' when not heard of for `lost_after` seconds,
    'connected' when it has applied everything, else 'syncing'."""
    if stored == "pending":
        return "pending"
    if seen_age is None or seen_age > lost_after:
        return "lost"
    if position is not None and position >= master_position:
        return "connected"
    return "syncing"


def handshake_problem(
    master_version: str,
    master_revision: str | None,
    shadow_version: str,
    shadow_revision: str | None,
) -> str | None:
    """Why a shadow may not join this master, or None: same software, same schema revision."""
    if master_version != shadow_version or master_revision != shadow_revision:
        return (
            f"version mismatch: master runs shadowline {master_version} (schema {master_revision}), "
            f"shadow runs shadowline {shadow_version} (schema {shadow_revision}); "
            "install the same version on both"
        )
    return None


def timing_problem(lease: float, margin: float, takeover_delay: float) -> str | None:
    """Why a master with this lease (and margin: one heartbeat) might still take writes when a
    watchdog with this takeover delay promotes its shadow, or None: the rule
    `lease + margin < takeover delay` (settings check it at start, the preflight across
    processes)."""
    if lease + margin < takeover_delay:
        return None
    return (
        f"timing rule broken: master lease {lease:.2f}s + margin {margin:.2f}s must be < "
        f"takeover delay {takeover_delay:.2f}s "
        "(raise SHADOWLINE_TAKEOVER_DELAY or lower SHADOWLINE_HEARTBEAT_INTERVAL)"
    )
