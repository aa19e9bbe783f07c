"""Hooks: the operator's commands run at role changes (SHADOWLINE_ON_ROLE_CHANGE) and before a
shadow takes writes (SHADOWLINE_BEFORE_PROMOTE). Pure: what a run is told, and what its
outcome says; running the command is adapters.hook_process, the bookkeeping application.hooks.

A hook is told the same four things both ways, as arguments appended to its command line
(`ROLE PREVIOUS_ROLE EPOCH CAUSE`) and as SHADOWLINE_HOOK_* environment variables, which also
carry the hook's name, the attempt, the instance and the cluster (and, before a promotion, the
master being replaced). Nothing else of the instance's SHADOWLINE_* environment reaches it: the
cluster secret and the admin password are not a hook's business.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

ENV_PREFIX = "SHADOWLINE_"
HOOK_PREFIX = "SHADOWLINE_HOOK_"
OUTPUT_LINES = 50  # lines of a hook's output logged (and the characters of each, below)
OUTPUT_LINE_CHARS = 500


class HookName(StrEnum):
    ON_ROLE_CHANGE = "on-role-change"
    BEFORE_PROMOTE = "before-promote"


class Cause(StrEnum):
    """Why the role changed (SHADOWLINE_HOOK_CAUSE)."""

    ENABLE = "enable"  # HA enabled: standalone -> master
    JOIN = "join"  # joined a master: standalone -> shadow
    FAILOVER = "failover"  # a watchdog promoted this shadow
    SWITCH = "switch"  # a planned switch of roles (both sides)
    REJOIN = "rejoin"  # an old master became the shadow of a newer one
    UNKNOWN = "unknown"  # a role change recorded without its cause (never by shadowline)


class Outcome(StrEnum):
    OK = "ok"  # exit code 0
    FAILED = "failed"  # another exit code (or killed by a signal)
    TIMEOUT = "timeout"  # still running at the timeout: killed, with its process group
    ERROR = "error"  # could not be started (removed since start-up, not executable any more)


@dataclass(frozen=True, slots=True)
class HookCall:
    """One run of a hook: what it is told."""

    hook: HookName
    role: str
    previous_role: str
    epoch: int
    cause: Cause | str
    attempt: int = 1
    previous_master: str | None = None  # before-promote: the master being replaced
    previous_master_url: str | None = None

    def argv(self, command: str) -> list[str]:
        """The command, split as a shell would split words (but run without a shell), with
        the four arguments appended."""
        return [*shlex.split(command), self.role, self.previous_role, str(self.epoch), self.cause]

    def env(self, inherited: Mapping[str, str], instance: str, cluster: str) -> dict[str, str]:
        # Settings are read whatever the case of their names (pydantic-settings): so is this.
        own = {k: v for k, v in inherited.items() if not k.upper().startswith(ENV_PREFIX)}
        told = {
            "NAME": str(self.hook),
            "ROLE": self.role,
            "PREVIOUS_ROLE": self.previous_role,
            "EPOCH": str(self.epoch),
            "CAUSE": str(self.cause),
            "ATTEMPT": str(self.attempt),
            "INSTANCE": instance,
            "CLUSTER": cluster,
            "PREVIOUS_MASTER": self.previous_master or "",
            "PREVIOUS_MASTER_URL": self.previous_master_url or "",
        }
        return {**own, **{HOOK_PREFIX + k: v for k, v in told.items()}}

    def what(self) -> str:
        again = f", attempt {self.attempt}" if self.attempt > 1 else ""
        return (
            f"{self.hook} hook ({self.previous_role} -> {self.role} in epoch {self.epoch}, "
            f"{self.cause}{again})"
        )


@dataclass(frozen=True, slots=True)
class HookResult:
    outcome: Outcome
    exit_code: int | None  # None: timed out or never started
    seconds: float
    output: tuple[str, ...] = ()  # the first OUTPUT_LINES lines, each cut to OUTPUT_LINE_CHARS
    dropped: int = 0  # bytes of output beyond what was kept
    error: str | None = None  # why it could not be started

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def detail(self, timeout: float) -> str:
        if self.outcome is Outcome.OK:
            return f"exited 0 after {self.seconds:.2f}s"
        if self.outcome is Outcome.TIMEOUT:
            return f"still running after its timeout of {timeout:.1f}s: killed"
        if self.outcome is Outcome.ERROR:
            return f"could not be started: {self.error}"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code} after {self.seconds:.2f}s"
        return f"exited {self.exit_code} after {self.seconds:.2f}s"


@dataclass(frozen=True, slots=True)
class HookRecord:
    """One row of the role-change hook's journal (a role this instance took in an epoch)."""

    epoch: int
    role: str
    previous_role: str
    cause: str
    state: str  # pending | running | done | failed | skipped
    attempts: int
    exit_code: int | None = None
    detail: str | None = None

    def call(self) -> HookCall:
        """The next run of it: a row already `running` died with its process (attempt + 1)."""
        return HookCall(
            HookName.ON_ROLE_CHANGE,
            self.role,
            self.previous_role,
            self.epoch,
            self.cause,
            attempt=self.attempts + 1,
        )


def sentence(call: HookCall, result: HookResult, timeout: float) -> str:
    return f"{call.what()} {result.detail(timeout)}"


def aborted_sentence(instance: str, call: HookCall, result: HookResult, timeout: float) -> str:
    """Why a promotion did not happen: the shadow stays a read-only shadow, no epoch claimed."""
    return (
        f"promotion of {instance} to epoch {call.epoch} aborted ({call.cause}): "
        f"{sentence(call, result, timeout)}; it stays a read-only shadow in epoch "
        f"{call.epoch - 1}, no epoch was claimed"
    )


def command_problem(command: str, which: str | None) -> str | None:
    """What is wrong with a hook's command line: unparsable, empty, or its program not found
    (`which`: the program as PATH or the path resolves it, None when nothing does)."""
    try:
        words = shlex.split(command)
    except ValueError as error:
        return f"cannot be split into words ({error})"
    if not words:
        return "is empty"
    if which is None:
        return f"names {words[0]!r}, which is not an executable file (nor one found on PATH)"
    return None
