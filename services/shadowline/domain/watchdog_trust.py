"""A watched cluster's keys, derived once: what the watchdog checks every message with.

`domain.trust` derives a key per call through a small cache (`keys.derive`); a watchdog of
1,000 clusters with a secret each would miss it on every heartbeat. Here each cluster's
heartbeat and monitoring keys are derived once; the MACs are the same as `trust.message_mac`
and a heartbeat is judged by `trust.heartbeat_refusal`'s rules (a unit test holds both equal).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson

from shadowline.domain import keys, trust
from shadowline.domain.events import parse_time

ANNOUNCEMENT = "failover.watchdog"


@dataclass(slots=True)
class ClusterKeys:
    cluster: str
    secret: str
    heartbeat_key: bytes = b""
    monitoring_key: bytes = b""
    heartbeats: trust.Freshness = field(default_factory=trust.Freshness)
    watchdogs: trust.Freshness = field(default_factory=trust.Freshness)

    def __post_init__(self) -> None:
        self.heartbeat_key = keys.derive(self.secret, keys.HEARTBEAT)
        self.monitoring_key = keys.derive(self.secret, keys.MONITORING)

    def mac(self, routing_key: str, body: bytes) -> str:
        """keys.mac over keys.parts(cluster, routing key, body), with the key derived once."""
        key = self.heartbeat_key if routing_key.startswith("heartbeat.") else self.monitoring_key
        message = keys.parts(self.cluster, routing_key, body)
        return hmac.digest(key, message, "sha256").hex()

    def valid(self, routing_key: str, body: bytes, given: object) -> bool:
        if isinstance(given, bytes):
            given = given.decode(errors="replace")
        return isinstance(given, str) and hmac.compare_digest(self.mac(routing_key, body), given)

    def heartbeat(
        self, routing_key: str, body: bytes, given: object, now: float
    ) -> tuple[dict[str, Any] | None, str | None]:
        """As trust.heartbeat_refusal, with this cluster's keys."""
        if len(body) > trust.MAX_MESSAGE:
            return None, f"larger than {trust.MAX_MESSAGE} bytes"
        if not self.valid(routing_key, body, given):
            return None, "MAC missing or wrong (forged, tampered, or another secret)"
        return _heartbeat_fields(self.cluster, routing_key, body, self.heartbeats, now)

    def announcement(
        self, body: bytes, given: object, me: str, now: float
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Another watchdog's announcement if it is authentic, fresh and not our own, with
        None and None for our own; else None and why not."""
        if len(body) > trust.MAX_MESSAGE:
            return None, f"larger than {trust.MAX_MESSAGE} bytes"
        if not self.valid(ANNOUNCEMENT, body, given):
            return None, "MAC missing or wrong (forged, tampered, or another secret)"
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, "not JSON"
        if not isinstance(doc, dict) or doc.get("cluster") != self.cluster:
            return None, "not an announcement of this cluster"
        name, boot, seq, at = (doc.get(k) for k in ("watchdog", "boot", "seq", "at"))
        if not isinstance(name, str) or not isinstance(boot, str):
            return None, "watchdog and boot must be strings"
        if not isinstance(seq, int) or not isinstance(at, int | float):
            return None, "seq must be an integer and at a number"
        if name == me:
            return None, None
        refusal = self.watchdogs.refusal(name, boot, seq, float(at), now)
        return (None, refusal) if refusal else (doc, None)


def _heartbeat_fields(
    cluster: str, routing_key: str, body: bytes, fresh: trust.Freshness, now: float
) -> tuple[dict[str, Any] | None, str | None]:
    """trust.heartbeat_refusal past its MAC check (the same rules, in the same order)."""
    try:
        beat = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(beat, dict):
        return None, "not a JSON object"
    instance, epoch, seq, boot = (beat.get(k) for k in ("instance", "epoch", "seq", "boot"))
    if not isinstance(instance, str) or routing_key != f"heartbeat.{instance}":
        return None, f"instance {instance!r} does not match routing key {routing_key!r}"
    if beat.get("cluster") != cluster or beat.get("role") not in trust.ROLES:
        return None, "wrong cluster or role"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (epoch, seq)):
        return None, "epoch and seq must be integers"
    if not isinstance(boot, str) or not isinstance(beat.get("sent_at"), str):
        return None, "boot and sent_at must be strings"
    try:
        sent_at = parse_time(str(beat["sent_at"])).timestamp()
    except ValueError:
        return None, "sent_at is not a time"
    assert isinstance(seq, int)
    refusal = fresh.refusal(instance, boot, seq, sent_at, now)
    return (None, refusal) if refusal else (beat, None)
