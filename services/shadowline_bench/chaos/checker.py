"""The verdict on a chaos run: its history against the final stores of both instances.

Every check counts what it found and lists it; a run passes only when every count is 0, the
master and the shadow hold the same state and chain head, and every key is linearizable:

- acknowledged writes lost: an `ok` write whose (key, version, value) is not in the master's
  final store;
- writes applied unacknowledged: an event in either store whose value no `ok` or `info` write
  of its key carried (the write was `fail`, or never invoked);
- versions with a gap or a fork: a key whose versions in a store are not 1, 2, 3, ... once each,
  or two different values for one (key, version) among both stores and the acknowledgements;
- split brain: one epoch acknowledged by two instances, or an instance acknowledging in epoch e
  a write invoked after another instance's acknowledgement in a newer epoch had come back;
- the per-key linearizability of `linearizable`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadowline_bench.chaos.history import Operation
from shadowline_bench.chaos.linearizable import DEFAULT_BUDGET, OK, KeyResult, canonical, check


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """A config event of an instance's final store."""

    position: int
    kind: str
    name: str
    version: int
    value: Any
    epoch: int | None = None
    instance: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StoreEvent:
        fields = ("position", "kind", "name", "version", "value", "epoch", "instance")
        return cls(**{name: raw[name] for name in fields if name in raw})


@dataclass(frozen=True, slots=True)
class Store:
    """An instance's final store: its events in position order, its state per key as
    (version, value), and the chain value at its last position."""

    instance: str
    events: tuple[StoreEvent, ...]
    state: Mapping[str, tuple[int, Any]]
    head: str

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Store:
        events = tuple(StoreEvent.from_dict(e) for e in raw["events"])
        state = {key: (int(v[0]), v[1]) for key, v in raw["state"].items()}
        return cls(raw["instance"], events, state, raw["head"])


@dataclass(frozen=True)
class Report:
    """What the checker found; `text()` is the short report a run prints."""

    operations: Mapping[str, int]
    lost: tuple[Operation, ...]
    unacknowledged: tuple[StoreEvent, ...]
    version_faults: tuple[str, ...]
    split_brain: tuple[str, ...]
    stores_differ: tuple[str, ...]
    linearizability: Mapping[str, KeyResult] = field(default_factory=dict)

    @property
    def not_linearizable(self) -> list[KeyResult]:
        return [r for r in self.linearizability.values() if r.verdict != OK]

    @property
    def ok(self) -> bool:
        found = (self.lost, self.unacknowledged, self.version_faults, self.split_brain)
        return not any(found) and not self.stores_differ and not self.not_linearizable

    def text(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self.operations.items()))
        lines = [f"operations: {counts or 'none'}"]
        lines += _section("acknowledged writes lost", [op.describe() for op in self.lost])
        lines += _section(
            "writes applied unacknowledged",
            [f"{e.key} v{e.version} at position {e.position}" for e in self.unacknowledged],
        )
        lines += _section("versions with a gap or a fork", list(self.version_faults))
        lines += _section("split brain", list(self.split_brain))
        lines += _section("master and shadow differ", list(self.stores_differ), zero="equal")
        bad = self.not_linearizable
        keys = len(self.linearizability)
        lines.append(f"linearizable: {keys - len(bad)} of {keys} keys " + _verdict(not bad))
        for result in bad:
            lines.append(f"  {result.key}: {result.verdict} ({result.operations} operations)")
            lines += [f"    {op.describe()}" for op in result.window]
        lines.append("verdict: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def _section(title: str, found: list[str], zero: str = "0") -> list[str]:
    head = f"{title}: {len(found) if found else zero} " + _verdict(not found)
    return (
        [head]
        + [f"  {line}" for line in found[:20]]
        + ([f"  ... and {len(found) - 20} more"] if len(found) > 20 else [])
    )


def check_run(
    history: Sequence[Operation], master: Store, shadow: Store, budget: int = DEFAULT_BUDGET
) -> Report:
    """The report on a run: `history` paired (history.pair), the stores after heal and drain."""
    return Report(
        operations=Counter(f"{op.f} {op.outcome}" for op in history),
        lost=tuple(lost_acknowledgements(history, master)),
        unacknowledged=tuple(unacknowledged_writes(history, (master, shadow))),
        version_faults=tuple(version_faults(history, (master, shadow))),
        split_brain=tuple(split_brain(history)),
        stores_differ=tuple(differences(master, shadow)),
        linearizability=check(history, budget),
    )


def _acknowledged(history: Iterable[Operation]) -> list[Operation]:
    return [op for op in history if op.is_write and op.outcome == "ok"]


def lost_acknowledgements(history: Iterable[Operation], master: Store) -> list[Operation]:
    held = {(e.key, e.version, canonical(e.value)) for e in master.events}
    return [
        op for op in _acknowledged(history) if (op.key, op.version, canonical(op.value)) not in held
    ]


def unacknowledged_writes(
    history: Iterable[Operation], stores: Iterable[Store]
) -> list[StoreEvent]:
    """Events whose value no ok or info write of their key carried, each (key, version, value)
    once even when both stores hold it."""
    allowed = {
        (op.key, canonical(op.value))
        for op in history
        if op.is_write and op.outcome in ("ok", "info")
    }
    found: dict[tuple[str, int, bytes], StoreEvent] = {}
    for store in stores:
        for e in store.events:
            value = canonical(e.value)
            if (e.key, value) not in allowed:
                found.setdefault((e.key, e.version, value), e)
    return list(found.values())


def version_faults(history: Iterable[Operation], stores: Sequence[Store]) -> list[str]:
    """Gaps and repeats of a key's versions in each store, and forks: two values for one
    (key, version) among the stores and the acknowledged writes."""
    faults = []
    for store in stores:
        versions: dict[str, list[int]] = {}
        for e in store.events:
            versions.setdefault(e.key, []).append(e.version)
        for key, seen in sorted(versions.items()):
            if sorted(seen) != list(range(1, len(seen) + 1)):
                faults.append(f"{store.instance}: {key} has versions {_ranges(sorted(seen))}")
    values: dict[tuple[str, int], set[bytes]] = {}
    claims = [(e.key, e.version, e.value) for s in stores for e in s.events]
    claims += [(op.key, op.version, op.value) for op in _acknowledged(history) if op.version]
    for key, version, value in claims:
        values.setdefault((key, version), set()).add(canonical(value))
    for (key, version), distinct in sorted(values.items()):
        if len(distinct) > 1:
            faults.append(f"fork: {key} v{version} has {len(distinct)} values")
    return faults


def _ranges(versions: list[int]) -> str:
    shown = ", ".join(map(str, versions[:12]))
    return shown + (f", ... ({len(versions)} in all)" if len(versions) > 12 else "")


def split_brain(history: Iterable[Operation]) -> list[str]:
    """Acknowledgements that two masters at once would explain."""
    acks = [op for op in _acknowledged(history) if op.epoch is not None and op.instance]
    found = []
    by_epoch: dict[int, set[str]] = {}
    for op in acks:
        by_epoch.setdefault(op.epoch or 0, set()).add(op.instance or "")
    for epoch, instances in sorted(by_epoch.items()):
        if len(instances) > 1:
            found.append(f"epoch {epoch} acknowledged by {', '.join(sorted(instances))}")
    # Sweep in time; at one instant invokes come first: a return at the very time of an
    # invoke counts as concurrent with it, not before.
    newest: dict[str, tuple[int, Operation]] = {}
    moments = sorted(
        [(op.ret, 0, op) for op in acks] + [(op.call, 1, op) for op in acks],
        key=lambda m: (m[0], -m[1]),
    )
    for _, is_call, op in moments:
        if not is_call:
            best = newest.get(op.instance or "")
            if best is None or (op.epoch or 0) > best[0]:
                newest[op.instance or ""] = (op.epoch or 0, op)
            continue
        for other, (epoch, before) in newest.items():
            if other != op.instance and epoch > (op.epoch or 0):
                found.append(
                    f"{op.describe()} came after epoch {epoch} was acknowledged by {other}: "
                    f"{before.describe()}"
                )
                break
    return found


def differences(master: Store, shadow: Store) -> list[str]:
    """How the two final stores differ, key by key, then by chain head."""
    found = []
    for key in sorted(set(master.state) | set(shadow.state)):
        mine, theirs = master.state.get(key), shadow.state.get(key)
        if _state(mine) != _state(theirs):
            found.append(
                f"{key}: {master.instance} {_shown(mine)}, {shadow.instance} {_shown(theirs)}"
            )
    if master.head != shadow.head:
        found.append(
            f"chain head: {master.instance} {master.head}, {shadow.instance} {shadow.head}"
        )
    return found


def _state(state: tuple[int, Any] | None) -> tuple[int, bytes] | None:
    return None if state is None else (state[0], canonical(state[1]))


def _shown(state: tuple[int, Any] | None) -> str:
    return "absent" if state is None else f"v{state[0]}"
