"""Event envelopes and the SHA-256 hash chain over them.

The chain value at position p is sha256(chain(p-1) || canonical(envelope p)), with 32 zero bytes
before position 1, so two stores agree up to p exactly when their chain values at p are equal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from uuid import UUID

import orjson

GENESIS: Final = bytes(32)

CONFIG_PUT: Final = "ConfigPut"
CONFIG_DELETED: Final = "ConfigDeleted"
CONFIG_EVENT_TYPES: Final = frozenset({CONFIG_PUT, CONFIG_DELETED})


@dataclass(frozen=True, slots=True)
class Event:
    id: UUID
    position: int
    epoch: int
    type: str
    kind: str | None
    name: str | None
    version: int | None
    data: Any
    metadata: dict[str, Any]
    recorded_at: datetime
    chain: bytes = field(default=GENESIS, compare=False)
    # A MAC of `chain` with the cluster's event key (domain.trust); None when written without
    # a cluster secret. Not part of the chain: it vouches for the chain value and so for the
    # whole log up to this event.
    signature: bytes | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def routing_key(self) -> str:
        if self.type in CONFIG_EVENT_TYPES:
            verb = "put" if self.type == CONFIG_PUT else "deleted"
            return f"config.{self.kind}.{verb}"
        return f"ha.{self.type}"


@lru_cache(maxsize=64)  # a writer's batch shares one moment: strftime once per batch
def format_time(moment: datetime) -> str:
    """The one textual form of a timestamp: UTC, microseconds, 'Z'. Part of the chain input."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def body(event: Event) -> dict[str, Any]:
    """The envelope without its chain value: what the chain hashes."""
    return {
        "id": str(event.id),
        "position": event.position,
        "epoch": event.epoch,
        "type": event.type,
        "kind": event.kind,
        "name": event.name,
        "version": event.version,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": format_time(event.recorded_at),
    }


def envelope(event: Event) -> dict[str, Any]:
    signature = event.signature.hex() if event.signature is not None else None
    return {**body(event), "chain": event.chain.hex(), "signature": signature}


def canonical(event: Event) -> bytes:
    return orjson.dumps(body(event), option=orjson.OPT_SORT_KEYS)


def link(previous: bytes, event: Event) -> bytes:
    return chain_of(previous, canonical(event))


def chain_of(previous: bytes, canonical_body: bytes) -> bytes:
    """The chain value of an event whose `canonical` bytes are given (computed once by a
    writer that also signs them)."""
    return hashlib.sha256(previous + canonical_body).digest()


def sealed(event: Event, chain: bytes, signature: bytes | None) -> Event:
    """`event` with its chain value and signature (dataclasses.replace, without its cost)."""
    e = event
    return Event(
        e.id, e.position, e.epoch, e.type, e.kind, e.name, e.version, e.data, e.metadata,
        e.recorded_at, chain, signature,
    )  # fmt: skip


def from_envelope(doc: dict[str, Any]) -> Event:
    return Event(
        id=UUID(doc["id"]),
        position=int(doc["position"]),
        epoch=int(doc["epoch"]),
        type=doc["type"],
        kind=doc.get("kind"),
        name=doc.get("name"),
        version=doc.get("version"),
        data=doc.get("data"),
        metadata=doc.get("metadata") or {},
        recorded_at=parse_time(doc["recorded_at"]),
        chain=bytes.fromhex(doc["chain"]) if doc.get("chain") else GENESIS,
        signature=bytes.fromhex(doc["signature"]) if doc.get("signature") else None,
    )


@dataclass(frozen=True, slots=True)
class ChainBreak:
    position: int
    expected: str
    found: str


def verify_chain(previous: bytes, events: list[Event]) -> ChainBreak | None:
    """The first event whose stored chain value does not follow from its predecessor, if any."""
    for event in events:
        expected = link(previous, event)
        if expected != event.chain:
            return ChainBreak(event.position, expected.hex(), event.chain.hex())
        previous = expected
    return None
