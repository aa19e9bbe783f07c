"""The pure side of hooks: what a run is told, and the sentences of its outcome."""

from __future__ import annotations

from shadowline.domain.hooks import (
    Cause,
    HookCall,
    HookName,
    HookRecord,
    HookResult,
    Outcome,
    aborted_sentence,
    sentence,
)
from shadowline.domain.promote import PromoteCommand, cause

CALL = HookCall(HookName.BEFORE_PROMOTE, "master", "shadow", 4, Cause.SWITCH, previous_master="a")


def test_the_arguments_follow_the_command_line_split_as_words() -> None:
    argv = CALL.argv("/usr/local/bin/vip --move 'eth0 x'")
    assert argv == ["/usr/local/bin/vip", "--move", "eth0 x", "master", "shadow", "4", "switch"]


def test_the_environment_drops_every_shadowline_variable_and_keeps_the_rest() -> None:
    inherited = {"PATH": "/bin", "SHADOWLINE_CLUSTER_SECRET": "s", "shadowline_admin_password": "p"}
    env = CALL.env(inherited, "node-b", "prod")  # settings are read whatever the names' case
    assert env["PATH"] == "/bin" and "shadowline_admin_password" not in env
    assert {k for k in env if k.startswith("SHADOWLINE_")} == {
        f"SHADOWLINE_HOOK_{n}" for n in ("NAME", "ROLE", "PREVIOUS_ROLE", "EPOCH", "CAUSE",
                                         "ATTEMPT", "INSTANCE", "CLUSTER", "PREVIOUS_MASTER",
                                         "PREVIOUS_MASTER_URL")
    }  # fmt: skip
    assert env["SHADOWLINE_HOOK_PREVIOUS_MASTER"] == "a"


def test_a_row_left_running_is_run_as_its_next_attempt() -> None:
    row = HookRecord(3, "shadow", "master", "rejoin", "running", attempts=1)
    assert (row.call().attempt, row.call().cause) == (2, "rejoin")
    assert "attempt 2" in row.call().what()


def test_the_outcomes_say_what_happened() -> None:
    assert HookResult(Outcome.OK, 0, 0.5).detail(10) == "exited 0 after 0.50s"
    assert HookResult(Outcome.FAILED, 2, 0.1).detail(10) == "exited 2 after 0.10s"
    assert HookResult(Outcome.FAILED, -9, 0.1).detail(10) == "killed by signal 9 after 0.10s"
    assert "timeout of 10.0s: killed" in HookResult(Outcome.TIMEOUT, None, 10).detail(10)
    assert "could not be started: gone" in HookResult(Outcome.ERROR, None, 0, error="gone").detail(
        1
    )
    said = sentence(CALL, HookResult(Outcome.OK, 0, 0.5), 10)
    assert said == "before-promote hook (shadow -> master in epoch 4, switch) exited 0 after 0.50s"


def test_an_aborted_promotion_says_the_shadow_stays_and_no_epoch_was_claimed() -> None:
    said = aborted_sentence("node-b", CALL, HookResult(Outcome.FAILED, 1, 0.1), 10)
    assert said.startswith("promotion of node-b to epoch 4 aborted (switch): before-promote")
    assert said.endswith("it stays a read-only shadow in epoch 3, no epoch was claimed")


def test_a_promote_naming_its_fork_is_a_switch_and_one_without_a_failover() -> None:
    assert cause(PromoteCommand({"fork_position": 10})) is Cause.SWITCH
    assert cause(PromoteCommand({"epoch": 2})) is Cause.FAILOVER
