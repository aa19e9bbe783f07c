"""The recorded workload's history: one JSON line per step of an operation, and its pairing.

A step is an `invoke`, then one completion by the same process: `ok`, `fail` (definitely not
applied: 412, 409, 422, a 503 refusal before the write was taken) or `info` (unknown: a timeout,
a lost connection, 500/502/503/504 with the outcome unknown). A process has one operation at a
time, so pairing is by process. Writes carry the unique value written and, on the invoke, the
expected version (0 creates: If-None-Match: *); a write's `ok` carries the new version, a read's
`ok` the version and value read (0 and null when absent).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self, cast, get_args

import orjson

StepType = Literal["invoke", "ok", "fail", "info"]
Function = Literal["write", "read"]
Outcome = Literal["ok", "fail", "info"]


class HistoryError(ValueError):
    """Raised when a history line is malformed or its steps do not pair up per process."""


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the history, exactly as recorded."""

    process: int
    type: StepType
    f: Function
    key: str
    value: Any = None
    version: int | None = None
    epoch: int | None = None
    instance: str | None = None
    time: float = 0.0
    index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, line: dict[str, Any]) -> Step:
        try:
            step = cls(**line)
        except TypeError as e:
            raise HistoryError(f"not a history step: {line!r} ({e})") from e
        if step.type not in get_args(StepType) or step.f not in get_args(Function):
            raise HistoryError(f"unknown type or function in {line!r}")
        return step


@dataclass(frozen=True, slots=True)
class Operation:
    """An invoke and its completion. `value` is the value written, or for a read that
    completed ok the value read; `version` is the write's new version or the version read.
    An operation that never completed, or completed `info`, returns at +inf; `done` is when
    its completion was recorded (None: never)."""

    process: int
    f: Function
    key: str
    outcome: Outcome
    call: float
    ret: float
    done: float | None = None
    value: Any = None
    expected: int | None = None
    version: int | None = None
    epoch: int | None = None
    instance: str | None = None
    index: int = 0

    @property
    def is_write(self) -> bool:
        return self.f == "write"

    def describe(self) -> str:
        """One line for a report: who did what, with what result, between which times."""
        ret = "inf" if math.isinf(self.ret) else f"{self.ret:.6f}"
        if self.is_write:
            what = f"write({self.expected}, {_short(self.value)})"
            result = f" -> {self.version}" if self.outcome == "ok" else ""
        else:
            what = "read()"
            result = f" -> ({self.version}, {_short(self.value)})" if self.outcome == "ok" else ""
        where = f" by {self.instance} epoch {self.epoch}" if self.instance is not None else ""
        return (
            f"#{self.index} p{self.process} {self.key} {what} {self.outcome}{result}{where}"
            f" [{self.call:.6f}, {ret}]"
        )


def _short(value: Any, limit: int = 40) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HistoryWriter:
    """Appends steps to a JSON-lines file, flushing each line so that a crash of the workload
    loses at most the line being written. Numbers the steps it writes from `start`."""

    def __init__(self, path: Path | str, start: int = 0) -> None:
        # Open for the writer's lifetime (one line per step); close() or `with` ends it.
        self._file: BinaryIO = Path(path).open("ab")  # noqa: SIM115
        self._next = start

    def write(self, step: Step) -> Step:
        self._file.write(orjson.dumps(step.as_dict()) + b"\n")
        self._file.flush()
        return step

    # One argument per field of the format, so the call site reads like the record it makes.
    def record(
        self,
        process: int,
        type: StepType,
        f: Function,
        key: str,
        value: Any = None,
        version: int | None = None,
        epoch: int | None = None,
        instance: str | None = None,
        at: float | None = None,
    ) -> Step:
        """Writes the next step, numbered, at `at` or now on the monotonic clock."""
        now = time.monotonic() if at is None else at
        step = Step(process, type, f, key, value, version, epoch, instance, now, self._next)
        self._next += 1
        return self.write(step)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def parse(lines: Iterable[bytes | str]) -> list[Step]:
    """The steps of a history's lines; blank lines are skipped."""
    steps = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise HistoryError(f"line {number} is not JSON: {e}") from e
        if not isinstance(raw, dict):
            raise HistoryError(f"line {number} is not an object")
        steps.append(Step.from_dict(cast(dict[str, Any], raw)))
    return steps


def read_history(path: Path | str) -> list[Step]:
    with Path(path).open("rb") as lines:
        return parse(lines)


def pair(steps: Iterable[Step]) -> list[Operation]:
    """Each invoke with its process's next completion, in invoke order. An invoke left open
    at the end of the history is unknown (`info`), like one that timed out."""
    open_: dict[int, Step] = {}
    done: list[Operation] = []
    for step in steps:
        if step.type == "invoke":
            if step.process in open_:
                raise HistoryError(f"process {step.process} invoked twice: step {step.index}")
            open_[step.process] = step
            continue
        invoke = open_.pop(step.process, None)
        if invoke is None:
            raise HistoryError(f"step {step.index}: {step.type} without an invoke")
        if (invoke.f, invoke.key) != (step.f, step.key):
            raise HistoryError(f"step {step.index} completes another operation than its invoke")
        done.append(_operation(invoke, step))
    done.extend(_operation(invoke, None) for invoke in open_.values())
    return sorted(done, key=lambda op: (op.call, op.index))


def _operation(invoke: Step, end: Step | None) -> Operation:
    outcome = cast(Outcome, "info" if end is None else end.type)
    ret = math.inf if end is None or outcome == "info" else end.time
    read_ok = invoke.f == "read" and outcome == "ok"
    return Operation(
        process=invoke.process,
        f=invoke.f,
        key=invoke.key,
        outcome=outcome,
        call=invoke.time,
        ret=ret,
        done=None if end is None else end.time,
        value=end.value if read_ok and end is not None else invoke.value,
        expected=invoke.version if invoke.f == "write" else None,
        version=end.version if end is not None and outcome == "ok" else None,
        epoch=end.epoch if end is not None else None,
        instance=end.instance if end is not None else None,
        index=invoke.index,
    )


def operations(path: Path | str) -> list[Operation]:
    """The paired operations of a history file."""
    return pair(read_history(path))


def steps_of(ops: Iterable[Operation]) -> Iterator[Step]:
    """Steps that record `ops` (tests and synthetic histories), numbered in time order; a
    completion recorded at the same time as another process's invoke comes first. An
    operation with `done` None is left open."""
    lines: list[tuple[float, int, Step]] = []
    for op in ops:
        version = op.expected if op.is_write else None
        written = op.value if op.is_write else None
        invoke = Step(op.process, "invoke", op.f, op.key, written, version, None, None, op.call)
        lines.append((op.call, 1, invoke))
        if op.done is not None:
            end = Step(op.process, op.outcome, op.f, op.key, op.value, op.version, op.epoch,
                       op.instance, op.done)  # fmt: skip
            lines.append((op.done, 0, end))
    lines.sort(key=lambda line: line[:2])
    for index, (_, _, step) in enumerate(lines):
        yield Step(**{**step.as_dict(), "index": index})
