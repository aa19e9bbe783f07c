"""The instance's role and epoch as this process knows them (its database holds the truth).

`RoleState` is a value: a change of role, epoch or fence is a new one, set on the one holder
(application.roles.CurrentRole), which tells every waiter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Role(StrEnum):
    """What the instance is; equal to the strings stored in instance_state.role."""

    STANDALONE = "standalone"
    MASTER = "master"
    SHADOW = "shadow"


WRITABLE_ROLES = frozenset({Role.STANDALONE, Role.MASTER})


class FenceReason(StrEnum):
    """Why a master may not write right now. The value is the label the fencing counter
    (shadowline_fencings_total) uses where one exists; the sentence shown as `fenced` (/ha,
    alerts, logs) is the RoleState's `detail`."""

    STARTING = "starting"  # (re)started: it may have been replaced while it was down
    LEASE_LOST = "lease-lost"  # no heartbeat confirmed by the broker within the lease
    NEWER_EPOCH = "newer-epoch"  # heard a master of a newer epoch
    REJOINING = "rejoining"  # a newer master exists: becoming its shadow
    HANDING_OVER = "handing-over"  # switch roles: waiting for the shadow, then promoting it
    HANDOVER_UNKNOWN = "handover-unknown"  # switch roles: the promote may have landed


@dataclass(frozen=True, slots=True)
class RoleState:
    role: Role = Role.STANDALONE
    epoch: int = 1
    master_url: str | None = None
    fence: FenceReason | None = None
    detail: str | None = None  # the sentence of the fence, shown as `fenced`
    # HANDOVER_UNKNOWN: until when (monotonic seconds) the promote sent may still take effect.
    until: float | None = None

    @property
    def fenced(self) -> str | None:
        """Why a master may not write (the sentence); None if it may."""
        return self.detail if self.fence is not None else None

    @property
    def writable(self) -> bool:
        return self.role in WRITABLE_ROLES and self.fence is None

    @property
    def shown(self) -> str:
        """The role as /health and heartbeats show it: a fenced master is `fenced`."""
        return "fenced" if self.fence is not None and self.role == Role.MASTER else self.role

    def fenced_by(
        self, reason: FenceReason, sentence: str, until: float | None = None
    ) -> RoleState:
        return replace(self, fence=reason, detail=sentence, until=until)

    def unfenced(self) -> RoleState:
        return replace(self, fence=None, detail=None, until=None)
