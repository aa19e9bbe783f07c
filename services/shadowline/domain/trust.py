"""What makes a message of the cluster authentic and fresh: pure rules over the cluster's keys.

- Messages on the monitoring exchange carry a MAC (AMQP header `MAC_HEADER`) over the cluster,
  the routing key and the body bytes: heartbeats with the heartbeat key, everything else with
  the monitoring key. So a heartbeat cannot be re-published under another instance's routing
  key, into another cluster that shares the secret, or as another kind of message.
- An event carries a signature over its chain value and its canonical body with the event key;
  it authenticates the event on its own (before the chain can be checked, as for an event that
  arrives ahead of a gap) and, through the chain, the whole log below it.
- A genuine heartbeat replayed later changes nothing: `Freshness` admits per instance only a
  higher sequence number of the same run, or a newer run, within the clock window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import orjson

from shadowline.domain import keys
from shadowline.domain.events import Event, canonical, parse_time

MAC_HEADER: Final = "x-shadowline-mac"
WINDOW: Final = 30.0  # seconds of clock difference tolerated, as for commands
MAX_TRACKED: Final = 64  # instances remembered per cluster by `Freshness`
ROLES: Final = frozenset({"standalone", "master", "shadow", "fenced"})
MAX_MESSAGE: Final = 64 * 1024  # a heartbeat or monitoring message is a few hundred bytes


def _purpose(routing_key: str) -> str:
    return keys.HEARTBEAT if routing_key.startswith("heartbeat.") else keys.MONITORING


def message_mac(secret: str, cluster: str, routing_key: str, body: bytes) -> str:
    return keys.mac(secret, _purpose(routing_key), keys.parts(cluster, routing_key, body))


def message_valid(secret: str, cluster: str, routing_key: str, body: bytes, given: object) -> bool:
    if isinstance(given, bytes):  # AMQP header strings may arrive undecoded
        given = given.decode(errors="replace")
    message = keys.parts(cluster, routing_key, body)
    return keys.valid(secret, _purpose(routing_key), message, given)


def event_signature(secret: str, cluster: str, event: Event) -> bytes:
    """Over the cluster too: a genuine event of another cluster sharing the secret (one
    watchdog may serve several) never passes for one of this cluster's."""
    return signature_of(secret, cluster, event.chain, canonical(event))


def signature_of(secret: str, cluster: str, chain: bytes, canonical_body: bytes) -> bytes:
    """`event_signature` of the event whose chain value and `canonical` bytes are given."""
    message = keys.parts(cluster, chain, canonical_body)
    return bytes.fromhex(keys.mac(secret, keys.EVENT, message))


def event_signed(secret: str, cluster: str, event: Event) -> bool:
    if event.signature is None:
        return False
    message = keys.parts(cluster, event.chain, canonical(event))
    return keys.valid(secret, keys.EVENT, message, event.signature.hex())


@dataclass(slots=True)
class _Run:
    boot: str
    seq: int
    sent_at: float


@dataclass(slots=True)
class Freshness:
    """Per instance, the newest heartbeat admitted: refuses replays of older ones."""

    runs: dict[str, _Run] = field(default_factory=dict)

    def refusal(self, instance: str, boot: str, seq: int, sent_at: float, now: float) -> str | None:
        """Why this heartbeat is not fresh, or None (and then it is remembered as the newest).

        `sent_at` and `now` are wall-clock seconds; the monotonic clock of the receiver still
        judges silence, this only tells a replay from a new heartbeat.
        """
        if not abs(now - sent_at) <= WINDOW:
            return f"sent {now - sent_at:+.0f}s from now, outside the {WINDOW:.0f}s window"
        last = self.runs.get(instance)
        if last is not None:
            if boot == last.boot and seq <= last.seq:
                return f"sequence {seq} of this run was already heard (up to {last.seq}): replayed"
            if boot != last.boot and sent_at <= last.sent_at:
                return "from a run older than the one already heard: replayed"
        self.runs.pop(instance, None)
        self.runs[instance] = _Run(boot, seq, sent_at)
        while len(self.runs) > MAX_TRACKED:
            del self.runs[next(iter(self.runs))]
        return None


def heartbeat_refusal(
    secret: str | None,
    cluster: str,
    routing_key: str,
    body: bytes,
    mac: object,
    freshness: Freshness,
    now: float,
) -> tuple[dict[str, object] | None, str | None]:
    """The heartbeat in `body` if it is authentic, well-formed and fresh, else why not."""
    if not secret:
        return None, "no cluster secret to authenticate heartbeats with"
    if len(body) > MAX_MESSAGE:
        return None, f"larger than {MAX_MESSAGE} bytes"
    if not message_valid(secret, cluster, routing_key, body, mac):
        return None, "MAC missing or wrong (forged, tampered, or another secret)"
    try:
        beat = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(beat, dict):
        return None, "not a JSON object"
    instance, epoch, seq, boot = (beat.get(k) for k in ("instance", "epoch", "seq", "boot"))
    if not isinstance(instance, str) or routing_key != f"heartbeat.{instance}":
        return None, f"instance {instance!r} does not match routing key {routing_key!r}"
    if beat.get("cluster") != cluster or beat.get("role") not in ROLES:
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
    refusal = freshness.refusal(instance, boot, seq, sent_at, now)
    return (None, refusal) if refusal else (beat, None)
