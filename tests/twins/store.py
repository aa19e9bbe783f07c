"""An in-memory twin of adapters.store.EventStore: the same methods, the same refusals.

What migration 0006's functions enforce in PostgreSQL is enforced here too: the append's
compare-and-set on the head, gap-free positions, the term rule (no epoch older than the fence or
the head, at most one term on), unique ids and command ids; install only into an empty store;
fence never more than one term on. Values go through JSON on the way in, as JSONB columns do,
so a caller that keeps mutating what it appended cannot change the log.

Beyond the adapter, a test can hold appends at a gate (`hold`/`release`, `appending` says one is
waiting there) and make the next append fail (`fail_next_append`), before or after it lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shadowline.adapters.store import EventFilter, Head, Image, Snapshot
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import ConcurrentWriter, Conflict, NotFound
from shadowline.domain.events import CONFIG_DELETED, CONFIG_EVENT_TYPES, GENESIS, Event
from shadowline.domain.state import State, digest, fold
from tests.twins.store_recovery import (
    InMemoryLogView,
    backfill,
    install,
    quarantine_after,
    stored,
)


@dataclass(slots=True)
class _Failure:
    error: Exception
    after_commit: bool


class InMemoryStore:
    """One instance's store, in memory. Like the adapter, it expects a single writer."""

    def __init__(self) -> None:
        self.log: dict[int, Event] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.snapshots: dict[int, dict[str, Any]] = {}
        self.quarantine: list[dict[str, Any]] = []
        self.top = Head(0, GENESIS, None)
        self.cursor = 0
        self.batches: list[list[Event]] = []  # every append that landed, as it was given
        self.appending = asyncio.Event()  # an append is waiting at the gate
        self._gate: asyncio.Event | None = None
        self._failures: list[_Failure] = []
        self.unusable: Exception | None = None  # what `probe` raises (the server is gone)

    # -- what a test controls ----------------------------------------------------------------

    def hold(self) -> None:
        """Appends from now on wait at a gate until `release` (a transaction in flight)."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def fail_next_append(self, error: Exception, *, after_commit: bool = False) -> None:
        """The next append raises `error`; `after_commit`: it landed all the same (a COMMIT
        whose answer was lost)."""
        self._failures.append(_Failure(error, after_commit))

    # -- writing -----------------------------------------------------------------------------

    async def append(self, batch: Sequence[Event], expected: int) -> None:
        if not batch:
            return
        gate = self._gate
        if gate is not None:
            self.appending.set()
            await gate.wait()
            self.appending.clear()
        failure = self._failures.pop(0) if self._failures else None
        if failure is not None and not failure.after_commit:
            raise failure.error
        self._check_append(batch, expected)
        self._land(batch)
        if failure is not None:
            raise failure.error

    def _check_append(self, batch: Sequence[Event], expected: int) -> None:
        head, epochs = self.top, [e.epoch for e in batch]
        low, high = min(epochs), max(epochs)
        if [e.position for e in batch] != list(range(expected + 1, expected + 1 + len(batch))):
            raise ConcurrentWriter(
                f"append refused by the database: positions must be {expected}+1 to "
                f"{expected}+{len(batch)}, gap-free"
            )
        if head.position != expected or low < head.fence_epoch:
            raise ConcurrentWriter(
                f"the store's head is no longer at {expected}: another writer appended"
            )
        term = max(head.epoch, head.fence_epoch, 1)
        if low < head.epoch or high > term + 1 or batch[-1].epoch != high:
            raise ConcurrentWriter(
                f"append refused by the database: epochs {low} to {high} do not follow the "
                f"head's epoch {head.epoch} (fence {head.fence_epoch})"
            )
        ids = {e.id for e in self.log.values()}
        commands = {e.metadata.get("command_id") for e in self.log.values()} - {None}
        for event in batch:
            command = event.metadata.get("command_id")
            if event.id in ids or (command is not None and command in commands):
                raise ConcurrentWriter(
                    "append refused by the database: duplicate key value violates unique "
                    f"constraint (event {event.id})"
                )
            ids.add(event.id)
            if command is not None:
                commands.add(command)

    def _land(self, batch: Sequence[Event]) -> None:
        for event in batch:
            kept = self.keep(event)
            self.log[kept.position] = kept
            if kept.kind is not None and kept.type in CONFIG_EVENT_TYPES:
                self.items[(kept.kind, str(kept.name))] = self.row_of(kept)
        last = self.log[batch[-1].position]
        self.top = replace(
            self.top,
            position=last.position,
            chain=last.chain,
            recorded_at=last.recorded_at,
            epoch=last.epoch,
        )
        self.batches.append(list(batch))

    @staticmethod
    def keep(event: Event) -> Event:
        return replace(
            event,
            data=stored(event.data),
            metadata=stored(event.metadata),
            recorded_at=event.recorded_at.astimezone(UTC),
        )

    @staticmethod
    def row_of(event: Event) -> dict[str, Any]:
        live = event.type != CONFIG_DELETED
        return {
            "kind": event.kind,
            "name": event.name,
            "version": event.version,
            "live": live,
            "value": event.data if live else None,
            "position": event.position,
            "updated_at": event.recorded_at,
        }

    async def save_snapshot(self, position: int, state: State) -> None:
        if position in self.snapshots:
            return
        at = self.log.get(position)
        self.snapshots[position] = {
            "taken_at": datetime.now(UTC),
            "digest": digest(state),
            "state": stored(state),
            "chain": at.chain if at else None,
            "epoch": at.epoch if at else None,
        }

    async def install(self, image: Image) -> None:
        install(self, image)

    async def backfill(self, batch: Sequence[Event], base_position: int) -> None:
        """Refusals raise ConcurrentWriter (the adapter lets the driver's IntegrityError out)."""
        backfill(self, batch, base_position)

    async def image(self) -> Image:
        rows = [dict(self.items[key]) for key in sorted(self.items)]
        state = {f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]}
        return Image(self.top.position, self.top.chain, self.top.epoch, rows, state)

    async def fence(self, epoch: int) -> None:
        term = max(self.top.epoch, self.top.fence_epoch, 1)
        if epoch > term + 1:
            raise Conflict(
                f"the store refused the fence: epoch {epoch} is more than one term past this "
                f"store's newest ({term})"
            )
        self.top = replace(self.top, fence_epoch=max(self.top.fence_epoch, epoch))

    async def quarantine_after(self, fork: int, new_epoch: int) -> int:
        return quarantine_after(self, fork, new_epoch)

    async def quarantined(self) -> list[dict[str, Any]]:
        return sorted(
            (dict(row) for row in self.quarantine),
            key=lambda r: (r["quarantined_at"], r["position"]),
        )

    async def promotion_after(self, epoch: int) -> Event | None:
        return next(
            (e for e in self._ordered() if e.epoch > epoch and e.type == "MasterPromoted"), None
        )

    async def relay_cursor(self) -> int:
        return self.cursor

    async def set_relay_cursor(self, position: int, *, force: bool = False) -> None:
        if force or self.cursor < position:
            self.cursor = position

    # -- reading -----------------------------------------------------------------------------

    def _ordered(self) -> list[Event]:
        return [self.log[p] for p in sorted(self.log)]

    @asynccontextmanager
    async def consistent(self) -> AsyncIterator[InMemoryLogView]:
        yield InMemoryLogView(self)

    async def head(self) -> Head:
        return self.top

    async def probe(self) -> None:
        if self.unusable is not None:
            raise self.unusable

    async def recycle(self) -> None:
        """It holds no connection: nothing to drop."""

    async def versions(self) -> dict[tuple[str, str], ItemVersion]:
        return {key: ItemVersion(r["version"], r["live"]) for key, r in self.items.items()}

    async def item(self, kind: str, name: str) -> tuple[Any, int] | None:
        row = self.items.get((kind, name))
        return None if row is None or not row["live"] else (row["value"], row["version"])

    async def current(self) -> tuple[int, State]:
        rows = (self.items[key] for key in sorted(self.items))
        return self.top.position, {
            f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]
        }

    async def state_at(self, position: int) -> State:
        if 0 < position < self.top.base_position:
            raise NotFound(
                f"history before position {self.top.base_position} is still being copied from "
                "the master (shadow bootstrap); ask again shortly"
            )
        base = self._snapshot_before(position)
        start = base.position if base else 0
        after = (e for e in self._ordered() if start < e.position <= position)
        return fold(base.state if base else {}, after)

    def _snapshot_before(self, position: int) -> Snapshot | None:
        at = max((p for p in self.snapshots if p <= position), default=None)
        if at is None:
            return None
        row = self.snapshots[at]
        return Snapshot(at, row["digest"], stored(row["state"]), row["chain"])

    async def snapshot_at(self, position: int) -> Snapshot | None:
        found = self._snapshot_before(position)
        return found if found is not None and found.position == position else None

    async def latest_snapshot(self) -> Snapshot | None:
        return self._snapshot_before(2**62)

    async def latest_snapshot_position(self) -> int:
        return max(self.snapshots, default=0)

    async def position_at(self, moment: datetime) -> int:
        return max((e.position for e in self.log.values() if e.recorded_at <= moment), default=0)

    async def read(self, after: int, limit: int, where: EventFilter = EventFilter()) -> list[Event]:
        def matches(e: Event) -> bool:
            return (
                e.position > after
                and (where.kind is None or e.kind == where.kind)
                and (where.name is None or e.name == where.name)
                and (where.actor is None or e.metadata.get("actor") == where.actor)
                and (where.since is None or e.recorded_at >= where.since)
                and (where.until is None or e.recorded_at <= where.until)
                and (not where.types or e.type in where.types)
            )

        return [e for e in self._ordered() if matches(e)][:limit]

    async def chain_at(self, position: int) -> bytes | None:
        if position == 0:
            return GENESIS
        event = self.log.get(position)
        return None if event is None else event.chain

    async def chains(self, positions: Sequence[int]) -> dict[int, bytes]:
        return {p: self.log[p].chain for p in positions if p in self.log}

    async def head_signed(self) -> bool | None:
        if not self.log:
            return None
        return self.log[max(self.log)].signature is not None
