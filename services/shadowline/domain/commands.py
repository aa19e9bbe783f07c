"""Commands (imperative) and the pure decision that turns one into an event or an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shadowline.domain.errors import NotFound, PreconditionFailed, VersionConflict
from shadowline.domain.events import CONFIG_DELETED, CONFIG_PUT
from shadowline.domain.kinds import item_key


@dataclass(frozen=True, slots=True)
class PutItem:
    kind: str
    name: str
    value: Any
    expected_version: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    only_if_absent: bool = False  # If-None-Match: *: create, never replace


@dataclass(frozen=True, slots=True)
class DeleteItem:
    kind: str
    name: str
    expected_version: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """Record an HA event (ha.<type> on the broker) in the log; it changes no config item."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


Command = PutItem | DeleteItem | RecordEvent


@dataclass(frozen=True, slots=True)
class ItemVersion:
    """What the writer must know of an item to decide: its last version and whether it is live.

    A deleted item keeps its version, so a re-created item continues the sequence and an
    If-Match naming a version from before the deletion can never match by accident.
    """

    version: int
    live: bool


@dataclass(frozen=True, slots=True)
class Decision:
    type: str
    version: int
    created: bool


def decide(command: PutItem | DeleteItem, current: ItemVersion | None) -> Decision:
    """Decide a command against the item's current version; raises VersionConflict,
    PreconditionFailed (create only, and it exists) or NotFound."""
    key = item_key(command.kind, command.name)
    live_version = current.version if current is not None and current.live else None
    if command.expected_version is not None and command.expected_version != live_version:
        raise VersionConflict(key, command.expected_version, live_version)
    if isinstance(command, PutItem) and command.only_if_absent and live_version is not None:
        raise PreconditionFailed(key, live_version)
    next_version = (current.version if current is not None else 0) + 1
    if isinstance(command, DeleteItem):
        if live_version is None:
            raise NotFound(f"{key} does not exist")
        return Decision(CONFIG_DELETED, next_version, created=False)
    return Decision(CONFIG_PUT, next_version, created=live_version is None)
