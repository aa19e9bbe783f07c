"""The chaos workload's pure parts (shadowline_bench.chaos.workload): what an HTTP answer says of
a write or a read, the precondition headers, unique values; and the run's printed report
(shadowline_bench.chaos.report)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from shadowline_bench.chaos.history import Operation
from shadowline_bench.chaos.nemesis import Fault
from shadowline_bench.chaos.report import ChaosReport, failovers
from shadowline_bench.chaos.resources import Usage
from shadowline_bench.chaos.workload import (
    answer_note,
    classify,
    guard,
    read_result,
    value_of,
)

REQUEST = httpx.Request("PUT", "http://127.0.0.1:1/config/subaccount/x")


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(body), headers=headers)


@pytest.mark.parametrize("status", [200, 201])
def test_a_write_answered_200_or_201_is_ok(status: int) -> None:
    assert classify(answer(status, {"version": 1})) == "ok"


@pytest.mark.parametrize("status", [409, 412, 422, 400, 401, 404])
def test_a_write_refused_with_a_4xx_was_certainly_not_applied(status: int) -> None:
    assert classify(answer(status, {"error": "no"})) == "fail"


def test_a_503_naming_the_master_without_retry_after_is_a_refusal_not_applied() -> None:
    refused = answer(503, {"error": "this instance is a shadow", "master": "http://b"})
    assert classify(refused) == "fail"
    assert classify(answer(503, {"error": "no master now", "master": None})) == "fail"


def test_a_503_refusal_may_be_counted_unknown_for_a_lenient_run() -> None:
    refused = answer(503, {"error": "not acknowledged", "master": "http://a"})
    assert classify(refused, refusals_unknown=True) == "info"
    assert classify(answer(409, {"error": "version"}), refusals_unknown=True) == "fail"


def test_a_503_with_retry_after_leaves_the_outcome_unknown() -> None:
    unavailable = answer(503, {"error": "database", "master": None}, **{"Retry-After": "1"})
    assert classify(unavailable) == "info"


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_or_proxy_error_leaves_the_outcome_unknown(status: int) -> None:
    assert classify(answer(status, {"error": "internal"})) == "info"
    assert classify(httpx.Response(status, content=b"<html>bad gateway</html>")) == "info"


def test_a_write_never_sent_failed_and_one_cut_after_sending_is_unknown() -> None:
    assert classify(httpx.ConnectError("refused", request=REQUEST)) == "fail"
    assert classify(httpx.ConnectTimeout("slow", request=REQUEST)) == "fail"
    assert classify(httpx.ReadTimeout("slow", request=REQUEST)) == "info"
    assert classify(httpx.RemoteProtocolError("closed", request=REQUEST)) == "info"
    assert classify(httpx.ReadError("reset", request=REQUEST)) == "info"
    assert classify(RuntimeError("anything else")) == "info"


def test_a_read_gives_the_version_and_value_and_an_absent_item_is_version_0() -> None:
    assert read_result(answer(200, {"value": {"a": 1}, "version": 3})) == ("ok", 3, {"a": 1})
    assert read_result(answer(404, {"error": "absent"})) == ("ok", 0, None)
    assert read_result(answer(503, {"error": "x", "master": None}))[0] == "fail"
    assert read_result(httpx.ReadTimeout("slow", request=REQUEST))[0] == "info"
    assert read_result(httpx.ConnectError("refused", request=REQUEST))[0] == "fail"


def test_a_write_expecting_version_0_creates_only_and_others_name_their_version() -> None:
    assert guard(0) == {"If-None-Match": "*"}
    assert guard(7) == {"If-Match": '"7"'}


def test_every_value_of_a_run_is_unique_and_fits_the_subaccount_kind() -> None:
    values = {orjson.dumps(value_of("run1", p, n)) for p in range(4) for n in range(1, 200)}
    assert len(values) == 4 * 199
    assert set(value_of("run1", 0, 1)) == {"region", "subaccount_id"}


def test_what_a_write_got_is_kept_but_for_plain_conflicts() -> None:
    assert answer_note(answer(409, {"error": "current version is 3"})) is None
    assert answer_note(answer(412, {"error": "exists"})) is None
    note = answer_note(answer(503, {"error": "not acknowledged", "master": "http://a"}))
    assert note == {"status": 503, "retry_after": None, "error": "not acknowledged"}
    assert answer_note(httpx.ReadTimeout("slow", request=REQUEST)) == {
        "status": None,
        "error": "ReadTimeout('slow')",
    }


# -- the report ------------------------------------------------------------------------------------


def ack(index: int, call: float, done: float, epoch: int, instance: str) -> Operation:
    return Operation(
        index, "write", "subaccount/k", "ok", call, done, done, {"n": index}, index, index + 1,
        epoch, instance, index,
    )  # fmt: skip


def fault(kind: str, target: str, start: float, epoch: int = 1) -> Fault:
    return Fault(kind, target, "node-a", start, start + 1, start + 2, epoch)


HISTORY = [
    ack(0, 1.0, 1.1, 1, "node-a"),
    ack(1, 10.5, 13.0, 2, "node-b"),  # the new master's first, 3 s after the kill at 10
    ack(2, 21.0, 21.2, 2, "node-b"),  # after a pause of the master that promoted nobody
]
FAULTS = [fault("kill", "master", 10.0), fault("pause", "master", 20.0, epoch=2)]


def test_a_failover_is_timed_from_the_fault_to_the_first_ok_write_in_a_newer_epoch() -> None:
    kill, pause = failovers(FAULTS, HISTORY)
    assert (kill.promoted, kill.seconds, kill.instance, kill.epoch) == (True, 3.0, "node-b", 2)
    assert not pause.promoted
    assert pause.seconds == pytest.approx(1.2)


def test_a_fault_away_from_the_master_that_promoted_nobody_is_no_failover() -> None:
    assert failovers([fault("kill", "shadow", 0.5)], HISTORY[:1]) == []


def test_the_report_shows_faults_operations_failovers_resources_and_the_checker() -> None:
    report = ChaosReport(
        seed=7, minutes=2, processes=4, delay=2, begun=0.0, faults=FAULTS, history=HISTORY,
        checker="verdict: PASS", settle=4.25,
        start={"node-a": Usage(11, 100 * 1024, 20, 1)},
        end={"node-a": Usage(12, 110 * 1024, 22, 1), "rabbit-0": Usage(None)},
        restarts={"node-a": 1},
        answers=[{"status": 503, "retry_after": None, "error": "not acknowledged"}],
    )  # fmt: skip
    assert report.text().splitlines() == [
        "chaos run: seed 7, 2 min, 4 client processes, takeover delay 2 s",
        "faults injected: 2 (kill master 1, pause master 1)",
        "operations by outcome: write ok 3",
        "writes not ok, by answer (plain version conflicts left out):",
        "  1 x 503: not acknowledged",
        "failovers (fault -> first ok write on the new master):",
        "  kill master node-a at +10.0 s: 3.00 s, node-b in epoch 2",
        "  pause master node-a at +20.0 s: no promotion, first ok write after 1.20 s",
        "  1 failovers: min 3.00 s, median 3.00 s, max 3.00 s",
        "heal -> one master and its shadow in sync: 4.2 s",
        "memory and descriptors (RSS; open fds), start -> end:",
        "  node-a       100.0 MiB; 20 fds -> 110.0 MiB; 22 fds (restarted 1x: end is its last start)",
        "  rabbit-0     not running -> not running",
        "checker:",
        "  verdict: PASS",
    ]


def test_a_report_without_faults_says_none_and_an_unsettled_heal_says_so() -> None:
    report = ChaosReport(1, 0.5, 1, 2, 0.0, [], [], "verdict: PASS", None)
    text = report.text()
    assert "faults injected: 0\n" in text
    assert "failovers (fault -> first ok write on the new master):\n  none" in text
    assert "heal -> one master and its shadow in sync: did not settle" in text


def test_a_lenient_run_says_how_it_counted_the_503_refusals() -> None:
    report = ChaosReport(1, 1, 1, 2, 0.0, [], [], "verdict: PASS", 1.0, refusals_unknown=True)
    assert "  (503 refusals of writes counted unknown, info, not fail)" in report.text()
