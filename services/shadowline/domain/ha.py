"""High-availability rules as pure functions: shadow status, sync checks, version handshake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ROLES: Final = frozenset({"standalone", "master", "shadow", "fenced"})

# How far behind (in events) a shadow may be and still count as in sync for the /shadow probe.
IN_SYNC_EVENTS: Final = 0


@dataclass(frozen=True, slots=True)
class ShadowView:
    """What a master shows of its shadow."""

    instance: str
    state: str  # pending | syncing | connected | lost
    position: int | None
    last_seen_age: float | None


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
