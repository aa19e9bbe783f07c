"""The instance's role and epoch as this process knows them, loaded from its own database."""

from __future__ import annotations

from dataclasses import dataclass

WRITABLE_ROLES = frozenset({"standalone", "master"})


@dataclass(slots=True)
class RoleState:
    role: str = "standalone"
    epoch: int = 1
    master_url: str | None = None

    @property
    def writable(self) -> bool:
        return self.role in WRITABLE_ROLES
