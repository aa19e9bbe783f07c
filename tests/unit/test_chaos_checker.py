"""The chaos run's history file (shadowline_bench.chaos.history) and the checker over a history
and both instances' final stores (shadowline_bench.chaos.checker)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from shadowline_bench.chaos.checker import Report, Store, StoreEvent, check_run
from shadowline_bench.chaos.history import (
    HistoryError,
    HistoryWriter,
    Operation,
    Outcome,
    Step,
    operations,
    pair,
    parse,
    read_history,
    steps_of,
)

KIND = "subaccount"


def write(
    index: int,
    name: str,
    expected: int,
    value: Any,
    call: float,
    outcome: Outcome = "ok",
    epoch: int = 1,
    instance: str = "node-a",
) -> Operation:
    ok = outcome == "ok"
    return Operation(
        index, "write", f"{KIND}/{name}", outcome, call, call + 1 if outcome != "info" else math.inf,
        call + 1, value, expected, expected + 1 if ok else None, epoch if ok else None,
        instance if ok else None, index,
    )  # fmt: skip


def read(index: int, name: str, version: int, value: Any, call: float) -> Operation:
    return Operation(
        index, "read", f"{KIND}/{name}", "ok", call, call + 1, call + 1, value, None, version,
        1, "node-a", index,
    )  # fmt: skip


def store(instance: str, applied: list[Operation], head: str = "chain-1") -> Store:
    """A store holding `applied` (writes) in order, with the state they make."""
    events, state = [], {}
    for position, op in enumerate(applied, 1):
        name = op.key.split("/", 1)[1]
        version = (op.expected or 0) + 1
        events.append(StoreEvent(position, KIND, name, version, op.value, op.epoch or 1))
        state[op.key] = (version, op.value)
    return Store(instance, tuple(events), state, head)


A1 = write(0, "a", 0, {"region": "eu10"}, 0)
A2 = write(1, "a", 1, {"region": "us10"}, 2)
B1 = write(2, "b", 0, {"region": "ap10"}, 1)
CLEAN = [A1, B1, A2, read(3, "a", 2, {"region": "us10"}, 4), read(4, "b", 1, {"region": "ap10"}, 4)]


def run(history: list[Operation], master: list[Operation], shadow: list[Operation]) -> Report:
    return check_run(history, store("node-a", master), store("node-b", shadow))


def test_a_clean_run_passes_every_check() -> None:
    report = run(CLEAN, [A1, B1, A2], [A1, B1, A2])
    assert report.ok
    assert dict(report.operations) == {"write ok": 3, "read ok": 2}
    assert report.text().splitlines() == [
        "operations: 2 read ok, 3 write ok",
        "acknowledged writes lost: 0 ok",
        "writes applied unacknowledged: 0 ok",
        "versions with a gap or a fork: 0 ok",
        "split brain: 0 ok",
        "master and shadow differ: equal ok",
        "linearizable: 2 of 2 keys ok",
        "verdict: PASS",
    ]


def test_an_acknowledged_write_missing_from_the_master_is_lost() -> None:
    report = run(CLEAN[:3], [A1, B1], [A1, B1])
    assert report.lost == (A2,)
    assert not report.ok
    assert "acknowledged writes lost: 1 FAIL" in report.text()


def test_a_value_in_the_store_whose_write_failed_or_was_never_invoked_is_counted() -> None:
    failed = write(5, "b", 1, {"region": "x"}, 5, "fail")
    never = write(6, "c", 0, {"region": "y"}, 6)
    report = run([*CLEAN, failed], [A1, B1, A2, failed, never], [A1, B1, A2, failed, never])
    assert [(e.key, e.version) for e in report.unacknowledged] == [
        ("subaccount/b", 2),
        ("subaccount/c", 1),
    ]


def test_an_info_write_that_took_effect_is_neither_lost_nor_unacknowledged() -> None:
    unknown = write(5, "b", 1, {"region": "z"}, 5, "info")
    report = run([*CLEAN, unknown], [A1, B1, A2, unknown], [A1, B1, A2, unknown])
    assert report.ok, report.text()


def test_a_gap_in_a_keys_versions_and_a_fork_between_the_stores_are_found() -> None:
    a3 = write(5, "a", 2, {"region": "jp10"}, 5)
    other = write(6, "a", 2, {"region": "br10"}, 6)
    report = run([*CLEAN, a3], [A1, B1, a3], [A1, B1, A2, other])
    assert report.version_faults == (
        "node-a: subaccount/a has versions 1, 3",
        "fork: subaccount/a v3 has 2 values",
    )


def test_one_epoch_acknowledged_by_two_instances_is_split_brain() -> None:
    b2 = write(5, "b", 1, {"region": "x"}, 5, instance="node-b")
    report = run([*CLEAN, b2], [A1, B1, A2, b2], [A1, B1, A2, b2])
    assert report.split_brain == ("epoch 1 acknowledged by node-a, node-b",)


def test_an_old_master_acknowledging_after_the_new_epoch_acknowledged_is_split_brain() -> None:
    promoted = write(5, "b", 1, {"region": "x"}, 5, epoch=2, instance="node-b")
    stale = write(6, "a", 2, {"region": "y"}, 7, epoch=1)
    ops = [*CLEAN, promoted, stale]
    report = run(ops, [A1, B1, A2, promoted, stale], [A1, B1, A2, promoted, stale])
    assert len(report.split_brain) == 1
    assert report.split_brain[0].startswith("#6 p6 subaccount/a write(2, ")
    assert "came after epoch 2 was acknowledged by node-b" in report.split_brain[0]


def test_a_failover_where_the_old_epochs_acks_came_back_first_is_not_split_brain() -> None:
    overlapping = write(5, "b", 1, {"region": "x"}, 4.5, epoch=2, instance="node-b")
    ops = [*CLEAN, overlapping]
    report = run(ops, [A1, B1, A2, overlapping], [A1, B1, A2, overlapping])
    assert report.split_brain == ()


def test_master_and_shadow_states_and_chain_heads_must_be_equal() -> None:
    master = store("node-a", [A1, B1, A2])
    shadow = store("node-b", [A1, B1], head="chain-0")
    report = check_run(CLEAN[:3], master, shadow)
    assert report.stores_differ == (
        "subaccount/a: node-a v2, node-b v1",
        "chain head: node-a chain-1, node-b chain-0",
    )


def test_a_stale_read_fails_the_run_and_the_report_shows_its_window() -> None:
    stale = read(5, "a", 1, {"region": "eu10"}, 5)
    report = run([*CLEAN, stale], [A1, B1, A2], [A1, B1, A2])
    assert not report.ok
    text = report.text().splitlines()
    assert "linearizable: 1 of 2 keys FAIL" in text
    at = text.index("  subaccount/a: violation (4 operations)")
    # The shortest run: read #3 saw version 2, the later read #5 version 1.
    assert [line.split()[0] for line in text[at + 1 :] if line.startswith("    ")] == ["#3", "#5"]
    assert text[-1] == "verdict: FAIL"


def test_stores_read_from_data() -> None:
    raw = {
        "instance": "node-a",
        "head": "abc",
        "state": {"subaccount/a": [1, {"region": "eu10"}]},
        "events": [{"position": 1, "kind": KIND, "name": "a", "version": 1, "epoch": 1,
                    "value": {"region": "eu10"}, "recorded_at": "ignored"}],
    }  # fmt: skip
    parsed = Store.from_dict(raw)
    assert parsed.state == {"subaccount/a": (1, {"region": "eu10"})}
    assert parsed.events == (StoreEvent(1, KIND, "a", 1, {"region": "eu10"}, 1),)


def test_a_history_file_round_trips_and_pairs_each_invoke_with_its_completion(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as history:
        history.record(1, "invoke", "write", "subaccount/a", {"region": "eu10"}, 0, at=1.0)
        history.record(2, "invoke", "read", "subaccount/a", at=1.5)
        history.record(1, "ok", "write", "subaccount/a", {"region": "eu10"}, 1, 3, "node-a", 2.0)
        history.record(2, "ok", "read", "subaccount/a", {"region": "eu10"}, 1, 3, "node-a", 2.5)
        history.record(1, "invoke", "write", "subaccount/a", {"region": "us10"}, 1, at=3.0)
    steps = read_history(path)
    assert [s.index for s in steps] == [0, 1, 2, 3, 4]
    assert steps[2] == Step(
        1, "ok", "write", "subaccount/a", {"region": "eu10"}, 1, 3, "node-a", 2.0, 2
    )
    ops = operations(path)
    assert [(op.f, op.outcome, op.version, op.ret) for op in ops] == [
        ("write", "ok", 1, 2.0),
        ("read", "ok", 1, 2.5),
        ("write", "info", None, math.inf),
    ]
    assert ops[0].expected == 0 and ops[1].value == {"region": "eu10"}


def test_operations_written_as_steps_pair_back_to_themselves() -> None:
    ops = [A1, B1, A2, write(5, "b", 1, {"region": "x"}, 5, "fail"), write(6, "b", 1, 9, 7, "info")]
    paired = pair(steps_of(ops))
    assert [(op.key, op.outcome, op.value, op.version, op.ret) for op in paired] == [
        (op.key, op.outcome, op.value, op.version, op.ret) for op in ops
    ]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([b'{"process": 1, "type": "ok", "f": "read", "key": "k/a"}'], "without an invoke"),
        ([b'{"process": 1, "type": "invoke", "f": "read", "key": "k/a"}'] * 2, "invoked twice"),
        ([b"{not json"], "line 1 is not JSON"),
        ([b'{"process": 1, "type": "begin", "f": "read", "key": "k/a"}'], "unknown type"),
        ([b'{"process": 1, "f": "read"}'], "not a history step"),
    ],
)
def test_a_malformed_history_is_refused_saying_where(lines: list[bytes], error: str) -> None:
    with pytest.raises(HistoryError, match=error):
        pair(parse(lines))
