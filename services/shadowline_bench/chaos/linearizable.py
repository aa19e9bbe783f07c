"""Per-key linearizability of a versioned register, searched the Wing-Gong / Lowe way that
Porcupine uses, and the shortest time window that shows a violation.

Linearizability is P-compositional: a history is linearizable iff each key's sub-history is, so
each key is searched alone. The model is a register per key holding (version, value), starting
at (0, None): write(expected, value) takes effect only when the version is `expected` and makes
it (expected + 1, value), which an `ok` write must have returned; a read returns the state.
A `fail` write is dropped (not applied); an `info` write may take effect at any point after its
invoke, or never (it returns at +inf and the search may end without it); a read that did not
complete `ok` observed nothing and is dropped too.

The search walks the call and return entries in time order, linearizing a pending operation
(lifting its entries out of the list) whenever the model allows, and backtracks when it meets the
return of an operation it has not linearized. A set of (linearized operations, state) pairs
already tried prunes the search (Lowe's memoisation). A step budget bounds it: past the budget
the verdict is "unknown (budget)", never a hang.

On a violation, the operation that stopped the longest partial linearization anchors a window:
the run of the key's operations, in invoke order, from the first up to those invoked before it
returned, whose ends then move inwards while the run stays a violation of a relaxed history
(`_Windows`), one that any linearization of the whole history would also satisfy: the window
is a violation whatever else happened.

Equal times count as concurrent (an operation that returned at t and one invoked at t may be
ordered either way), which can only make the checker more lenient, never report a false
violation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from shadowline_bench.chaos.history import Operation

Verdict = Literal["ok", "violation", "unknown (budget)"]
OK: Verdict = "ok"
VIOLATION: Verdict = "violation"
UNKNOWN: Verdict = "unknown (budget)"
DEFAULT_BUDGET = 1_000_000

State = tuple[int, bytes]  # (version, the value's canonical JSON)
START: State = (0, b"null")
ANY: State = (-1, b"any")  # a version below every other: nothing is dead from here


def canonical(value: Any) -> bytes:
    """A value as bytes that compare equal exactly when the JSON values are equal."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class KeyResult:
    """One key's verdict: `window` is the shortest run of its operations (in invoke order) that
    is not linearizable whatever the writes outside it did, `stuck` the operation that stopped
    the longest partial linearization; `steps` counts the whole-key search only."""

    key: str
    verdict: Verdict
    operations: int
    steps: int
    window: tuple[Operation, ...] = ()
    stuck: Operation | None = None


@dataclass(frozen=True, slots=True)
class _Op:
    write: bool
    optional: bool
    expected: int
    version: int
    value: bytes
    call: float
    ret: float


def _prepare(op: Operation) -> _Op | None:
    """What the search needs of an operation, or None when it constrains nothing."""
    if op.outcome == "fail" or (not op.is_write and op.outcome != "ok"):
        return None
    value = canonical(op.value)
    if not op.is_write:
        return _Op(False, False, 0, op.version or 0, value, op.call, op.ret)
    expected = op.expected or 0
    # A missing new version on an ok write is taken as the one the model gives: the register
    # checks order and values, the version returned is checked against the store elsewhere.
    version = op.version if op.outcome == "ok" and op.version is not None else expected + 1
    return _Op(True, op.outcome == "info", expected, version, value, op.call, op.ret)


def _step(state: State, op: _Op, starts: frozenset[State]) -> State | None:
    """The state after `op`, or None when the model does not allow it here. ANY is any of
    `starts` (a window's unknown beginning), fixed by the first operation."""
    if op.write:
        if op.version != op.expected + 1:
            return None
        if state is ANY:
            fits = any(version == op.expected for version, _ in starts)
        else:
            fits = state[0] == op.expected
        return (op.version, op.value) if fits else None
    seen = (op.version, op.value)
    if state is ANY:
        return seen if seen in starts else None
    return seen if state == seen else None


def _unlink(nxt: list[int], prv: list[int], i: int) -> None:
    for e in (2 * i, 2 * i + 1):
        nxt[prv[e]] = nxt[e]
        if nxt[e] != -1:
            prv[nxt[e]] = prv[e]


def _relink(nxt: list[int], prv: list[int], i: int) -> None:
    for e in (2 * i + 1, 2 * i):
        nxt[prv[e]] = e
        if nxt[e] != -1:
            prv[nxt[e]] = e


# The search loop is one piece: its pointers and stack are shared by every branch, and
# splitting it would only pass them around (and cost a call per step).
def _search(
    ops: list[_Op], budget: int, starts: frozenset[State] | None = None
) -> tuple[bool | None, int, int]:
    """(linearizable or None past the budget, steps taken, the op that stopped the longest
    partial linearization, -1 if none did), from (0, None) or, given `starts`, from
    any of them. An optional operation still pending at its return is left out there, as one
    more branch the search may take back. Versions only grow along a branch, so an operation
    that needs an older version than the state's is dead there: an optional one is taken out
    of the list until the search backs out of that state (a timed-out write would otherwise be
    walked past at every step), a required one ends the branch."""
    n = len(ops)
    order = sorted(
        range(2 * n), key=lambda e: (ops[e >> 1].ret if e & 1 else ops[e >> 1].call, e & 1)
    )
    head = 2 * n
    nxt, prv = [-1] * (2 * n + 1), [-1] * (2 * n + 1)
    last = head
    for entry in order:
        nxt[last], prv[entry], last = entry, last, entry
    required = sum(not op.optional for op in ops)
    done, linearized = 0, 0
    state = START if starts is None else ANY
    anything = starts or frozenset()
    tried: set[tuple[int, State]] = set()
    calls: list[tuple[int, State, list[int]]] = []
    stuck, furthest = -1, -1
    entry, steps = nxt[head], 0
    while done < required:
        steps += 1
        if steps > budget:
            return None, steps, stuck
        i = entry >> 1
        op = ops[i]
        dead = (op.expected if op.write else op.version) < state[0]
        if not entry & 1 and dead and op.optional and calls:
            following = nxt[entry] if nxt[entry] != entry + 1 else nxt[entry + 1]
            _unlink(nxt, prv, i)
            calls[-1][2].append(i)
            entry = following
            continue
        if (not entry & 1 and not dead) or op.optional:
            after = _step(state, op, anything) if not entry & 1 else state
            mask = linearized | (1 << i)
            if after is not None and (mask, after) not in tried:
                tried.add((mask, after))
                calls.append((i, state, []))
                state, linearized, done = after, mask, done + (not op.optional)
                _unlink(nxt, prv, i)
                entry = nxt[head]
                continue
            if not entry & 1:
                entry = nxt[entry]
                continue
        if len(calls) > furthest:
            stuck, furthest = i, len(calls)
        if not calls:
            return False, steps, stuck
        i, state, removed = calls.pop()
        for gone in reversed(removed):
            _relink(nxt, prv, gone)
        linearized, done = linearized & ~(1 << i), done - (not ops[i].optional)
        _relink(nxt, prv, i)
        entry = nxt[2 * i]
    return True, steps, stuck


def check_key(key: str, history: Iterable[Operation], budget: int = DEFAULT_BUDGET) -> KeyResult:
    """The verdict on one key's operations (those of other keys must not be passed)."""
    kept = [
        (op, p) for op in sorted(history, key=lambda o: (o.call, o.index)) if (p := _prepare(op))
    ]
    originals, ops = [op for op, _ in kept], [p for _, p in kept]
    found, steps, stuck = _search(ops, budget)
    if found is None:
        return KeyResult(key, UNKNOWN, len(ops), steps)
    if found:
        return KeyResult(key, OK, len(ops), steps)
    lo, hi = _Windows(ops, budget).shortest(stuck)
    where = originals[stuck] if stuck >= 0 else None
    return KeyResult(key, VIOLATION, len(ops), steps, tuple(originals[lo : hi + 1]), where)


def check(history: Iterable[Operation], budget: int = DEFAULT_BUDGET) -> dict[str, KeyResult]:
    """The verdict per key, keys in order; `budget` bounds each key's search."""
    by_key: dict[str, list[Operation]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    return {key: check_key(key, by_key[key], budget) for key in sorted(by_key)}


class _Windows:
    """Shrinks a violation to the shortest run ops[lo..hi] (in invoke order) that is a violation
    in a relaxation of the history, so whatever else happened. The relaxation keeps the run as
    recorded; makes optional (within its own interval, or never) every other write that
    returned after the run's first invoke and was invoked before its last return; and starts
    from any state that (0, None) or a write that returned before the run began could have
    left. A run from the first operation starts from (0, None) exactly. Each trial is a search
    with the same budget; one past it counts as no violation, so the window can only come out
    longer, never wrong."""

    def __init__(self, ops: list[_Op], budget: int) -> None:
        self._ops = ops
        self._budget = budget

    def violated(self, lo: int, hi: int) -> bool:
        window = self._ops[lo : hi + 1]
        begin, end = window[0].call, max(op.ret for op in window)
        outside = [op for k, op in enumerate(self._ops) if op.write and not lo <= k <= hi]
        during = [
            replace(op, optional=True) for op in outside if begin <= op.ret and op.call <= end
        ]
        before = [(op.version, op.value) for op in outside if op.ret < begin]
        starts = frozenset([START, *before]) if lo else None
        return _search(window + during, self._budget, starts)[0] is False

    def shortest(self, stuck: int) -> tuple[int, int]:
        """From the prefix up to the stuck operation's return (every operation invoked before
        it returned), the end moves in first (the earliest violation), then each end in turn
        while the run stays a violation."""
        n = len(self._ops)
        end = self._ops[stuck].ret if stuck >= 0 else float("inf")
        hi = max((k for k in range(n) if self._ops[k].call <= end), default=n - 1)
        if not self.violated(0, hi):
            hi = n - 1
        lo, hi = 0, self._lower_hi(0, hi)
        for _ in range(n):
            moved = self._raise_lo(lo, hi)
            moved_hi = self._lower_hi(moved, hi)
            if (moved, moved_hi) == (lo, hi):
                break
            lo, hi = moved, moved_hi
        return lo, hi

    def _raise_lo(self, lo: int, hi: int) -> int:
        """The highest start found by bisection (then step by step) that is still a violation."""
        good, bad = lo, hi + 1
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if self.violated(mid, hi) else (good, mid)
        while good < hi and self.violated(good + 1, hi):
            good += 1
        return good

    def _lower_hi(self, lo: int, hi: int) -> int:
        good, bad = hi, lo - 1
        while good - bad > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if self.violated(lo, mid) else (good, mid)
        while good > lo and self.violated(lo, good - 1):
            good -= 1
        return good
