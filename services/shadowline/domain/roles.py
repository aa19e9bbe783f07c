"""The instance's role and epoch as this process knows them (its database holds the truth)."""

from __future__ import annotations

from dataclasses import dataclass

WRITABLE_ROLES = frozenset({"standalone", "master"})


@dataclass(slots=True)
class RoleState:
    role: str = "standalone"
    epoch: int = 1
    master_url: str | None = None
    # Why a master may not write right now (lost lease, starting, handing over); None if it may.
    fenced: str | None = None

    @property
    def writable(self) -> bool:
        return self.role in WRITABLE_ROLES and self.fenced is None

    @property
    def shown(self) -> str:
        """The role as /health and heartbeats show it: a fenced master is `fenced`."""
        return "fenced" if self.fenced is not None and self.role == "master" else self.role
