"""Bounded label values of the instance's metrics, and the rules that read them off sentences.

The reasons are read from the sentences that domain.signing and application.failover raise
(tests/unit/test_metrics_reasons.py pins them, so a reworded sentence shows there instead of
silently landing in reason="other").
"""

from __future__ import annotations

from shadowline.domain.errors import Conflict, Forbidden

ROLES = ("standalone", "master", "shadow", "fenced")
MODES = ("sync", "async")
SHADOW_STATES = ("pending", "syncing", "connected", "lost")
PROMOTION_TRIGGERS = ("failover", "switch-roles")
FENCE_REASONS = ("starting", "lease-lost", "newer-epoch", "rejoining", "other")
REJECT_REASONS = (
    "signature",
    "expired",
    "stale-epoch",
    "wrong-instance",
    "not-a-shadow",
    "fork-mismatch",
    "malformed",
    "other",
)
# What an instance may reject as unauthenticated (Monitor.rejected's `source`).
REJECTED_SOURCES = ("heartbeat", "event", "peer-answer", "monitoring")


def rejection_reason(error: Exception) -> str:
    """A bounded label for why a promote command was refused (the sentences come from
    domain.signing and application.failover; tests/unit/test_metrics_reasons.py pins them)."""
    text = str(error)
    if isinstance(error, Forbidden):
        for words, reason in (
            ("signature", "signature"),
            ("window", "expired"),
            ("not newer than epoch", "stale-epoch"),
            ("not for this instance", "wrong-instance"),
            ("unknown command", "malformed"),
        ):
            if words in text:
                return reason
    if isinstance(error, Conflict):
        if "only a shadow" in text:
            return "not-a-shadow"
        if "handed over at position" in text:
            return "fork-mismatch"
    if isinstance(error, ValueError):  # orjson.JSONDecodeError: the body is not JSON
        return "malformed"
    return "other"


def fence_reason(reason: str) -> str:
    """A bounded label for a fencing sentence of application.failover."""
    for words, label in (
        ("starting", "starting"),
        ("newer than", "newer-epoch"),
        ("lease", "lease-lost"),
        ("rejoining", "rejoining"),
    ):
        if words in reason:
            return label
    return "other"
