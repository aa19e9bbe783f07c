"""The per-key linearizability search of the chaos checker (shadowline_bench.chaos.linearizable)
on histories whose verdict is known, and on histories made from a real sequential execution."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowline_bench.chaos.history import Operation, Outcome
from shadowline_bench.chaos.linearizable import OK, UNKNOWN, VIOLATION, check, check_key

KEY = "subaccount/a"
INF = math.inf


def write(
    index: int, expected: int, value: Any, call: float, ret: float, outcome: Outcome = "ok"
) -> Operation:
    version = expected + 1 if outcome == "ok" else None
    ret = INF if outcome == "info" else ret
    return Operation(
        index, "write", KEY, outcome, call, ret, None, value, expected, version, index=index
    )


def read(index: int, version: int, value: Any, call: float, ret: float) -> Operation:
    return Operation(index, "read", KEY, "ok", call, ret, value=value, version=version, index=index)


def window(ops: list[Operation]) -> list[int]:
    result = check_key(KEY, ops)
    assert result.verdict == VIOLATION
    return [op.index for op in result.window]


def test_an_empty_history_is_linearizable() -> None:
    assert check_key(KEY, []).verdict == OK


@pytest.mark.parametrize("first", [0, 1])
def test_concurrent_writes_may_take_effect_in_either_order(first: int) -> None:
    ops = [
        write(0, first, "a", 0, 3),
        write(1, 1 - first, "b", 1, 4),
        read(2, 2, "b" if first == 0 else "a", 5, 6),
    ]
    assert check_key(KEY, ops).verdict == OK


def test_an_info_write_that_took_effect_is_linearizable() -> None:
    ops = [write(0, 0, "a", 0, 0, "info"), read(1, 1, "a", 5, 6), write(2, 1, "b", 7, 8)]
    assert check_key(KEY, ops).verdict == OK


def test_an_info_write_that_never_took_effect_is_linearizable() -> None:
    ops = [write(0, 0, "a", 0, 0, "info"), read(1, 0, None, 5, 6), write(2, 0, "b", 7, 8)]
    assert check_key(KEY, ops).verdict == OK


def test_an_info_write_may_take_effect_long_after_its_invoke() -> None:
    ops = [
        write(0, 0, "a", 0, 0, "info"),
        read(1, 0, None, 5, 6),
        read(2, 0, None, 7, 8),
        read(3, 1, "a", 9, 10),
    ]
    assert check_key(KEY, ops).verdict == OK


def test_reads_concurrent_with_a_write_see_the_old_value_then_the_new() -> None:
    ops = [
        write(0, 0, "a", 0, 10),
        read(1, 0, None, 1, 2),
        read(2, 1, "a", 3, 4),
        read(3, 1, "a", 5, 6),
    ]
    assert check_key(KEY, ops).verdict == OK


def test_a_failed_write_and_a_read_that_did_not_complete_are_left_out() -> None:
    unknown_read = Operation(9, "read", KEY, "info", 0.5, INF, index=9)
    ops = [write(0, 0, "x", 0, 1, "fail"), unknown_read, read(1, 0, None, 2, 3)]
    assert check_key(KEY, ops).verdict == OK


def test_a_stale_read_after_a_completed_write_is_a_violation() -> None:
    assert window([write(0, 0, "a", 0, 1), read(1, 0, None, 2, 3)]) == [0, 1]


def test_a_read_concurrent_with_a_write_may_not_see_the_old_value_after_the_new() -> None:
    ops = [write(0, 0, "a", 0, 10), read(1, 1, "a", 1, 2), read(2, 0, None, 3, 4)]
    assert window(ops) == [1, 2]


def test_a_read_of_a_value_never_written_is_a_violation_on_its_own() -> None:
    ops = [write(0, 0, "a", 0, 1), read(1, 1, "ghost", 2, 3), read(2, 1, "a", 4, 5)]
    result = check_key(KEY, ops)
    assert (result.verdict, [op.index for op in result.window]) == (VIOLATION, [1])


def test_a_read_of_a_value_before_its_write_was_invoked_is_a_violation() -> None:
    assert window([read(0, 1, "a", 0, 1), write(1, 0, "a", 2, 3)]) == [0]


def test_two_ok_writes_from_the_same_expected_version_are_a_violation() -> None:
    assert window([write(0, 0, "a", 0, 3), write(1, 0, "b", 1, 4)]) == [0, 1]


def test_an_acknowledged_write_lost_under_an_older_value_is_a_violation() -> None:
    ops = [write(0, 0, "a", 0, 1), write(1, 1, "b", 2, 3), read(2, 1, "a", 4, 5)]
    assert window(ops) == [1, 2]


def test_an_ok_write_that_returned_a_version_the_model_does_not_give_is_a_violation() -> None:
    skipped = Operation(0, "write", KEY, "ok", 0, 1, value="a", expected=0, version=2, index=0)
    assert window([skipped]) == [0]


def test_the_window_is_the_short_run_around_the_violation_not_the_whole_history() -> None:
    ops = []
    for n in range(10):
        ops.append(write(2 * n, n, f"v{n}", 10 * n, 10 * n + 2))
        ops.append(read(2 * n + 1, n + 1, f"v{n}", 10 * n + 4, 10 * n + 6))
    ops[11] = read(11, 5, "v4", 54, 56)  # after v5 was written, the read sees v4
    result = check_key(KEY, ops)
    assert result.verdict == VIOLATION
    assert [op.index for op in result.window] == [10, 11]
    assert result.stuck is not None and result.stuck.index == 11


def test_a_search_past_its_budget_is_unknown_rather_than_a_verdict() -> None:
    ops = [write(n, 0, f"v{n}", 0, 100, "info") for n in range(12)]
    ops.append(read(99, 0, None, 200, 201))
    ops.append(read(98, 1, "nowhere", 300, 301))
    assert check_key(KEY, ops, budget=50).verdict == UNKNOWN
    assert check_key(KEY, ops).verdict == VIOLATION


def test_writes_that_timed_out_long_ago_are_not_walked_past_at_every_step() -> None:
    ops = [write(1000 + n, n, f"lost{n}", 10 * n + 1, 0, "info") for n in range(300)]
    ops += [write(n, n, f"v{n}", 10 * n, 10 * n + 5) for n in range(300)]
    result = check_key(KEY, ops, budget=3_000)
    assert (result.verdict, result.operations) == (OK, 600)


def test_keys_are_checked_apart() -> None:
    other = Operation(5, "read", "subaccount/b", "ok", 2, 3, value=None, version=0, index=5)
    results = check([write(0, 0, "a", 0, 1), other])
    assert {key: r.verdict for key, r in results.items()} == {KEY: OK, "subaccount/b": OK}


KINDS = st.sampled_from(["read", "write", "stale", "applied info", "lost info"])


@st.composite
def executions(draw: st.DrawFn) -> list[Operation]:
    """A real sequential execution on two keys (operation n takes effect at 10 n), each operation
    recorded with a random interval around its point: linearizable by construction."""
    state: dict[str, tuple[int, str | None]] = {"k/a": (0, None), "k/b": (0, None)}
    ops = []
    for n in range(draw(st.integers(1, 30))):
        key = draw(st.sampled_from(sorted(state)))
        kind = draw(KINDS)
        call = 10.0 * n - draw(st.floats(0, 35))
        ret = 10.0 * n + draw(st.floats(0, 35))
        version, value = state[key]
        if kind == "read":
            ops.append(
                Operation(n, "read", key, "ok", call, ret, value=value, version=version, index=n)
            )
            continue
        expected = version + draw(st.integers(1, 3)) if kind == "stale" else version
        outcome: Outcome = "ok" if kind == "write" else "fail" if kind == "stale" else "info"
        if kind in ("write", "applied info"):
            state[key] = (version + 1, f"{key}-{n}")
        ret = INF if outcome == "info" else ret
        new = version + 1 if outcome == "ok" else None
        ops.append(
            Operation(
                n, "write", key, outcome, call, ret, None, f"{key}-{n}", expected, new, index=n
            )
        )
    return ops


@settings(max_examples=200, deadline=None)
@given(executions())
def test_histories_of_a_real_sequential_execution_are_always_linearizable(
    ops: list[Operation],
) -> None:
    assert {r.verdict for r in check(ops).values()} == {OK}


@settings(max_examples=100, deadline=None)
@given(executions(), st.data())
def test_a_read_of_a_value_nobody_wrote_is_always_found_in_its_window(
    ops: list[Operation], data: st.DataObject
) -> None:
    reads = [n for n, op in enumerate(ops) if op.f == "read"]
    if not reads:
        return
    n = data.draw(st.sampled_from(reads))
    was = ops[n]
    ops[n] = Operation(n, "read", was.key, "ok", was.call, was.ret, value="?", version=1, index=n)
    result = check(ops)[ops[n].key]
    assert result.verdict == VIOLATION
    assert ops[n] in result.window


def _brute_force(
    ops: list[Operation],
    optional: tuple[Operation, ...] = (),
    starts: tuple[tuple[int, Any], ...] = ((0, None),),
) -> bool:
    """Linearizable by trying every order that keeps real time, with each info write (and each
    of `optional`) in or out, from each of `starts`."""
    kept = [op for op in ops if op.outcome == "ok" or (op.is_write and op.outcome == "info")]
    unknown = [op for op in kept if op.outcome == "info" or op in optional]
    for chosen in itertools.product([False, True], repeat=len(unknown)):
        dropped = {id(op) for op, keep in zip(unknown, chosen, strict=True) if not keep}
        history = [op for op in kept if id(op) not in dropped]
        for order in itertools.permutations(history):
            if any(b.ret < a.call for a, b in itertools.combinations(order, 2)):
                continue
            if any(_runs(order, start) for start in starts):
                return True
    return False


def _runs(order: tuple[Operation, ...], state: tuple[int, Any]) -> bool:
    for op in order:
        if op.is_write:
            if state[0] != op.expected or (op.outcome == "ok" and op.version != state[0] + 1):
                return False
            state = (state[0] + 1, op.value)
        elif state != (op.version, op.value):
            return False
    return True


def _relaxed_window_is_a_violation(ops: list[Operation], window: tuple[Operation, ...]) -> bool:
    """The window's relaxation (linearizable._Windows), tried by brute force: the window as
    recorded, the other writes that returned after it began and were invoked before it ended
    optional, from (0, None) or the result of a write that returned before it began."""
    begin, end = window[0].call, max(op.ret for op in window)
    writes = [op for op in ops if op.is_write and op.outcome != "fail" and op not in window]
    during = tuple(op for op in writes if begin <= op.ret and op.call <= end)
    before = [((op.expected or 0) + 1, op.value) for op in writes if op.ret < begin]
    checked = [op for op in ops if op.outcome == "ok" or (op.is_write and op.outcome == "info")]
    first = min(checked, key=lambda op: (op.call, op.index)) in window
    starts = ((0, None),) if first else ((0, None), *before)
    return not _brute_force([*window, *during], during, starts)


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 6 operations on one key with plausible versions and values, often contradictory."""
    ops: list[Operation] = []
    for n in range(draw(st.integers(1, 6))):
        call = draw(st.integers(0, 12)) / 2
        ret = call + draw(st.integers(0, 8)) / 2
        if draw(st.booleans()):
            outcome: Outcome = draw(st.sampled_from(["ok", "ok", "info", "fail"]))
            expected = draw(st.integers(0, 2))
            ops.append(write(n, expected, f"w{n}", call, ret, outcome))
            continue
        seen = [(0, None)] + [(op.expected + 1, op.value) for op in ops if op.expected is not None]
        version, value = draw(st.sampled_from(seen))
        ops.append(read(n, version, value, call, ret))
    return ops


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_the_search_agrees_with_trying_every_order_on_small_histories(
    ops: list[Operation],
) -> None:
    result = check_key(KEY, ops)
    assert result.verdict == (OK if _brute_force(ops) else VIOLATION)
    assert (result.window != ()) == (result.verdict == VIOLATION)
    if result.window:
        assert _relaxed_window_is_a_violation(ops, result.window)
