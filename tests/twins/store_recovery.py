"""The in-memory store's bootstrap (install, backfill), its quarantine (the recovery of an old
master) and its audit view: kept apart from tests.twins.store to keep each module short; they
work on its fields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from shadowline.adapters.store import Head, Image
from shadowline.domain import audit
from shadowline.domain.errors import ConcurrentWriter, Conflict
from shadowline.domain.events import CONFIG_EVENT_TYPES, GENESIS, Event
from shadowline.domain.state import State, digest

if TYPE_CHECKING:
    from tests.twins.store import InMemoryStore


def stored(value: Any) -> Any:
    """`value` as a JSONB column gives it back."""
    return None if value is None else orjson.loads(orjson.dumps(value))


class InMemoryLogView:
    """The store as the audit reads it. One event loop and no awaits inside a read: nothing
    can change between two of its reads that the test did not do itself."""

    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    async def head(self) -> Head:
        return self._store.top

    async def events(self, after: int, limit: int) -> list[Event]:
        log = self._store.log
        return [log[p] for p in sorted(log) if p > after][:limit]

    async def served(self) -> audit.Rows:
        return {
            f"{r['kind']}/{r['name']}": audit.Row(
                r["version"], r["live"], r["value"], r["position"]
            )
            for r in self._store.items.values()
        }

    async def marks(self) -> dict[int, audit.Mark]:
        return {p: audit.Mark(s["digest"], s["chain"]) for p, s in self._store.snapshots.items()}

    async def snapshot_state(self, position: int) -> State:
        row = self._store.snapshots.get(position)
        return dict(row["state"]) if row else {}


def install(store: InMemoryStore, image: Image) -> None:
    """As shadowline_install (migration 0006): an empty store takes a master's image."""
    if store.top.position != 0 or store.log or store.items or store.snapshots:
        raise ConcurrentWriter(
            "bootstrap refused by the database: a store that already holds events cannot "
            "be bootstrapped"
        )
    malformed = any(
        not 1 <= r["position"] <= image.position or r["version"] < 1 for r in image.rows
    )
    if image.position < 1 or image.epoch < 1 or len(image.chain) != 32 or malformed:
        raise ConcurrentWriter(
            f"bootstrap refused by the database: a malformed bootstrap image (position "
            f"{image.position}, {len(image.rows)} rows)"
        )
    for row in image.rows:
        store.items[(row["kind"], row["name"])] = {**row, "value": stored(row["value"])}
    state = {f"{r['kind']}/{r['name']}": stored(r["value"]) for r in image.rows if r["live"]}
    store.snapshots[image.position] = {
        "taken_at": datetime.now(UTC),
        "digest": digest(image.state),
        "state": state,
        "chain": image.chain,
        "epoch": image.epoch,
    }
    store.top = replace(
        store.top,
        position=image.position,
        chain=image.chain,
        base_position=image.position,
        epoch=image.epoch,
    )


def backfill(store: InMemoryStore, batch: Sequence[Event], base_position: int) -> None:
    """As shadowline_backfill: history below the image, complete only when whole."""
    base = store.top.base_position
    image = store.snapshots.get(base)
    if base == 0 or image is None:
        raise ConcurrentWriter("this store was not bootstrapped from an image: no backfill")
    newest = image["epoch"] or store.top.epoch
    if any(not 1 <= e.position <= base or not 1 <= e.epoch <= newest for e in batch):
        raise ConcurrentWriter(
            f"backfill copies positions 1 to {base} of epochs up to {newest} only"
        )
    for event in batch:
        store.log.setdefault(event.position, store.keep(event))
    if base_position == base:
        return
    below = [p for p in store.log if p <= base]
    if base_position != 0 or len(below) != base or store.log[base].chain != image["chain"]:
        raise ConcurrentWriter(
            f"the history below {base} is not complete or does not end in the image's chain value"
        )
    store.top = replace(store.top, base_position=0)


def quarantine_after(store: InMemoryStore, fork: int, new_epoch: int) -> int:
    """As shadowline_quarantine_after (migration 0006): only the current, unfenced term's own
    events after `fork` move, into the next term, once."""
    head = store.top
    term = max(head.epoch, head.fence_epoch, 1)
    if head.base_position > 0:
        raise Conflict(
            "the store refused the quarantine: history below the bootstrap image is "
            "incomplete; cannot rebuild"
        )
    if not 0 <= fork <= head.position:
        raise Conflict(
            f"the store refused the quarantine: fork position {fork} is not in this log "
            f"(0 to {head.position})"
        )
    if new_epoch != term + 1:
        raise Conflict(
            f"the store refused the quarantine: a recovery enters the next term ({term + 1}), "
            f"not epoch {new_epoch}"
        )
    after = [store.log[p] for p in sorted(store.log) if p > fork]
    if head.epoch < head.fence_epoch or any(e.epoch != head.epoch for e in after):
        raise Conflict(
            f"the store refused the quarantine: only the writes of the current, unfenced term "
            f"{head.epoch} after the fork may be quarantined"
        )
    held = {row["id"] for row in store.quarantine}
    now = datetime.now(UTC)
    moved = [e for e in after if e.id not in held]
    store.quarantine.extend(_quarantined(e, now, fork, new_epoch) for e in moved)
    for event in after:
        del store.log[event.position]
    store.snapshots = {p: s for p, s in store.snapshots.items() if p <= fork}
    store.items = {}
    for event in (store.log[p] for p in sorted(store.log)):
        if event.kind is not None and event.type in CONFIG_EVENT_TYPES:
            store.items[(event.kind, str(event.name))] = store.row_of(event)
    at, image = store.log.get(fork), store.snapshots.get(fork)
    store.top = replace(
        head,
        position=fork,
        chain=at.chain if at else image["chain"] if image else GENESIS,
        recorded_at=at.recorded_at if at else None,
        epoch=at.epoch if at else (image["epoch"] or 0) if image else 0,
        fence_epoch=new_epoch,
    )
    store.cursor = min(store.cursor, fork)
    return len(moved)


def _quarantined(event: Event, now: datetime, fork: int, new_epoch: int) -> dict[str, object]:
    return {
        "position": event.position,
        "id": event.id,
        "epoch": event.epoch,
        "type": event.type,
        "kind": event.kind,
        "name": event.name,
        "version": event.version,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
        "chain": event.chain,
        "signature": event.signature,
        "quarantined_at": now,
        "fork_position": fork,
        "new_epoch": new_epoch,
    }
