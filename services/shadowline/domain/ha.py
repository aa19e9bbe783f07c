"""High-availability rules as pure functions: the shadow's status and the version handshake."""

from __future__ import annotations


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
