"""What the event store hands out and takes in besides events: its head, snapshots, a bootstrap
image, and the filter of a history read. Shared by the application (through its ports) and the
store adapter, so neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shadowline.domain.state import State


@dataclass(frozen=True, slots=True)
class Head:
    position: int
    chain: bytes
    recorded_at: datetime | None
    epoch: int = 0  # of the event at `position` (0 when the store is empty)
    base_position: int = 0  # events at or below it may not be here yet (shadow bootstrap)
    fence_epoch: int = 0  # appends of an older epoch are refused


@dataclass(frozen=True, slots=True)
class Snapshot:
    position: int
    digest: str
    state: State
    chain: bytes | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """A master's state for a shadow's bootstrap: head, item rows (with versions, tombstones)."""

    position: int
    chain: bytes
    epoch: int
    rows: list[dict[str, Any]]
    state: State


@dataclass(frozen=True, slots=True)
class EventFilter:
    kind: str | None = None
    name: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()  # event types (ConfigPut, MasterPromoted, ...); empty: all
