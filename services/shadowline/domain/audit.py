"""The audit of a log: its hash chain, its snapshots, and the state it folds to against what is
served. Pure: the caller feeds the log page by page from genesis, so memory is bounded by the
number of items, never by the length of the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shadowline.domain import trust
from shadowline.domain.events import CONFIG_EVENT_TYPES, CONFIG_PUT, GENESIS, Event, link
from shadowline.domain.state import State, digest, encode


@dataclass(frozen=True, slots=True)
class Row:
    """One item as the projection holds it: deleted items stay as tombstones (live false)."""

    version: int | None
    live: bool
    value: Any
    position: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "live": self.live,
            "value": self.value,
            "position": self.position,
        }


Rows = dict[str, Row]


def project(rows: Rows, event: Event) -> None:
    """Apply one event to the projection in place, exactly as the store's append derives it."""
    if event.type in CONFIG_EVENT_TYPES and event.kind is not None:
        live = event.type == CONFIG_PUT
        rows[event.key] = Row(event.version, live, event.data if live else None, event.position)


def served_state(rows: Mapping[str, Row]) -> State:
    return {key: row.value for key, row in rows.items() if row.live}


def _same(a: Row | None, b: Row | None) -> bool:
    if a is None or b is None:
        return a is b
    # Canonical bytes, not ==: True == 1 and 1 == 1.0 in Python, not in JSON.
    return (a.version, a.live, a.position) == (b.version, b.live, b.position) and encode(
        a.value
    ) == encode(b.value)


def first_difference(expected: Mapping[str, Row], found: Mapping[str, Row]) -> str | None:
    """The first key (in sorted order) whose served row is not what the log says, if any."""
    for key in sorted(expected.keys() | found.keys()):
        if not _same(expected.get(key), found.get(key)):
            return key
    return None


@dataclass(frozen=True, slots=True)
class Mark:
    """What a snapshot claims about the log at its position."""

    digest: str
    chain: bytes | None


class Audit:
    """Walks the log from genesis: chain links, snapshots on the way, then the served state."""

    def __init__(
        self, snapshots: Mapping[int, Mark], secret: str | None = None, cluster: str = ""
    ) -> None:
        # With the cluster secret, each event's signature is checked too: the chain alone is
        # unkeyed, so a superuser could re-chain a rewritten log; no one without the secret can
        # sign one. Unsigned events (written before a secret was set) may only open the log.
        self._secret, self._cluster = secret, cluster
        self.signed = self.unsigned = 0
        self.previous, self.checked = GENESIS, 0
        self.rows: Rows = {}
        self._marks = dict(snapshots)
        self.snapshots = 0

    def feed(self, events: Iterable[Event]) -> dict[str, Any] | None:
        """Check the next events in position order; the finding that ends the audit, if any."""
        for event in events:
            expected = link(self.previous, event)
            if expected != event.chain:
                return self._broken(event.position, expected.hex(), event.chain.hex())
            if (finding := self._signature(event)) is not None:
                return finding
            project(self.rows, event)
            self.previous, self.checked = expected, self.checked + 1
            if (mark := self._marks.pop(event.position, None)) is not None:
                found = self._snapshot(event.position, mark)
                if found is not None:
                    return found
        return None

    def _signature(self, event: Event) -> dict[str, Any] | None:
        if self._secret is None:
            return None
        if event.signature is None and not self.signed:
            self.unsigned += 1
            return None
        if event.signature is not None and trust.event_signed(self._secret, self._cluster, event):
            self.signed += 1
            return None
        what = "is unsigned after signed ones" if event.signature is None else "has a bad signature"
        return {
            "ok": False,
            "problem": "signature",
            "position": event.position,
            "checked": self.checked,
            "sentence": f"the event at position {event.position} {what}: the log was rewritten "
            "by someone without the cluster secret",
        }

    def _broken(self, position: int, expected: str, found: str) -> dict[str, Any]:
        return {
            "ok": False,
            "problem": "chain",
            "position": position,
            "expected": expected,
            "found": found,
            "checked": self.checked,
            "sentence": f"the hash chain breaks at position {position}: the log was changed there",
        }

    def _snapshot(self, position: int, mark: Mark) -> dict[str, Any] | None:
        self.snapshots += 1
        recomputed = digest(served_state(self.rows))
        if recomputed == mark.digest and mark.chain in (None, self.previous):
            return None
        return {
            "ok": False,
            "problem": "snapshot",
            "position": position,
            "expected": {"digest": recomputed, "chain": self.previous.hex()},
            "found": {"digest": mark.digest, "chain": mark.chain.hex() if mark.chain else None},
            "checked": self.checked,
            "sentence": f"the snapshot at position {position} is not the state the log folds to",
        }

    # Long on purpose: one verdict per problem, in the order verify reports them (the head,
    # stray snapshots, signatures, the served state), each a complete answer.
    def finish(self, position: int, chain: bytes, served: Mapping[str, Row]) -> dict[str, Any]:
        """After the last page: the head, snapshots past the log, and the served state."""
        done = {"position": position, "chain": chain.hex(), "checked": self.checked}
        if (position, chain) != (self.checked, self.previous):
            return {
                **done,
                "ok": False,
                "problem": "head",
                "expected": {"position": self.checked, "chain": self.previous.hex()},
                "found": {"position": position, "chain": chain.hex()},
                "sentence": f"the head says position {position}, the log ends at {self.checked}",
            }
        if self._marks:
            stray = min(self._marks)
            return {
                **done,
                "ok": False,
                "problem": "snapshot",
                "position": stray,
                "sentence": f"a snapshot at position {stray} has no event of the log under it",
            }
        if self._secret is not None and self.checked and not self.signed:
            return {
                **done,
                "ok": False,
                "problem": "signature",
                "sentence": "no event of the log is signed, yet this instance signs every write "
                "and marks a log it took over unsigned (SigningStarted): stripped and re-chained?",
            }
        key = first_difference(self.rows, served)
        if key is not None:
            expected, found = self.rows.get(key), served.get(key)
            return {
                **done,
                "ok": False,
                "problem": "state",
                "key": key,
                "expected": expected.as_dict() if expected else None,
                "found": found.as_dict() if found else None,
                "sentence": f"{key} is served differently from what the log says",
            }
        return {
            **done,
            "ok": True,
            "items": len(served),
            "snapshots": self.snapshots,
            "signatures": {
                "checked": self._secret is not None,
                "signed": self.signed,
                "unsigned_prefix": self.unsigned,
            },
            "sentence": f"ok: {self.checked} events chained, {self.snapshots} snapshots and "
            f"{len(served)} served items agree with the log",
        }
