"""Whether this instance's log and its peer's agree: chain values and state digests at a
position (GET /ha/verify, GET /ha/peer/chain), and the master's check of a shadow's report."""

from __future__ import annotations

from typing import Any, Protocol

from shadowline.application.ports.peer import Peer
from shadowline.application.ports.store import EventStore
from shadowline.domain.errors import Conflict, NotFound, PeerRefused, Unavailable
from shadowline.domain.ha import HaRecord
from shadowline.domain.roles import Role
from shadowline.domain.state import digest


class Head(Protocol):
    """The writer's view of the head (application.writer.Writer)."""

    @property
    def position(self) -> int: ...

    @property
    def chain(self) -> bytes: ...


class Pair(Protocol):
    """What the check with the peer needs of the HA service (application.ha.HaService)."""

    @property
    def role(self) -> Any: ...

    @property
    def position(self) -> int: ...

    def peer(self, url: str, instance: str | None = None, timeout: float = 10.0) -> Peer: ...

    async def chain_at(self, position: int) -> dict[str, Any]: ...


async def divergence(
    store: EventStore,
    head: Head,
    position: int,
    chain: bytes | None,
    reported: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Why a shadow reporting `chain` at `position` holds another log than ours (or what it
    `reported` of its own divergence), or None."""
    if position > head.position:
        return reported or {"position": position, "reason": "ahead of the master's log"}
    if reported is not None or chain is None or position <= 0:
        return reported
    ours = head.chain if position == head.position else await store.chain_at(position)
    if ours is not None and ours != chain:
        return {"position": position, "reason": "its chain value differs from ours"}
    return None


async def chain_at(store: EventStore, head: int, instance: str, position: int) -> dict[str, Any]:
    if position > head:
        raise NotFound(f"position {position} is beyond this instance's head ({head})")
    chain = await store.chain_at(position)
    if chain is None:
        snapshot = await store.snapshot_at(position)
        chain = snapshot.chain if snapshot else None
    if chain is None:
        raise NotFound(f"no chain value at position {position} here")
    state = await store.state_at(position)
    return {
        "instance": instance,
        "position": position,
        "chain": chain.hex(),
        "digest": digest(state),
    }


async def with_peer(ha: Pair, record: HaRecord) -> dict[str, Any]:
    """Compare chain value and state digest with the peer at the shadow's position."""
    shadow = ha.role.role == Role.SHADOW
    if not shadow and not (ha.role.role == Role.MASTER and record.shadow_url):
        raise Conflict("this instance has no peer to verify against")
    peer_name, peer_url = record.peer()
    assert peer_url is not None
    peer = ha.peer(peer_url, peer_name)
    try:
        if shadow:
            position = ha.position
        else:
            position = int((await peer.call("GET", "/ha/peer/chain"))["position"])
        theirs = await peer.call("GET", "/ha/peer/chain", params={"at": position})
    except PeerRefused as error:
        raise Unavailable(f"the peer refused the check: {error}") from error
    finally:
        await peer.close()
    ours = await ha.chain_at(position)
    agree = ours["chain"] == theirs["chain"] and ours["digest"] == theirs["digest"]
    sentence = (
        f"{'agree' if agree else 'DIFFER'}: {ours['instance']} and {theirs['instance']} "
        f"at position {position}: chain {ours['chain'][:12]}… vs {theirs['chain'][:12]}…, "
        f"state digest {ours['digest'][:12]}… vs {theirs['digest'][:12]}…"
    )
    return {
        "agree": agree,
        "position": position,
        "local": ours,
        "peer": theirs,
        "sentence": sentence,
    }
