"""The configuration as a fold over events, its digest, and the difference of two states."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shadowline.domain.events import CONFIG_DELETED, CONFIG_PUT, Event

State = dict[str, Any]


def apply(state: State, event: Event) -> State:
    """Apply one event in place; events that are not config changes leave the state alone."""
    if event.type == CONFIG_PUT:
        state[event.key] = event.data
    elif event.type == CONFIG_DELETED:
        state.pop(event.key, None)
    return state


def fold(state: Mapping[str, Any], events: Iterable[Event]) -> State:
    """State after the events, starting from a copy of `state` (a snapshot, or empty)."""
    result = dict(state)
    for event in events:
        apply(result, event)
    return result


def encode(state: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a state: sorted keys all the way down, so equal states encode equally."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def digest(state: Mapping[str, Any]) -> str:
    return hashlib.sha256(encode(state)).hexdigest()


@dataclass(frozen=True, slots=True)
class Diff:
    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> Diff:
    added = {k: after[k] for k in sorted(after.keys() - before.keys())}
    removed = {k: before[k] for k in sorted(before.keys() - after.keys())}
    changed = {
        k: {"from": before[k], "to": after[k]}
        for k in sorted(before.keys() & after.keys())
        if encode(before[k]) != encode(after[k])
    }
    return Diff(added, removed, changed)
