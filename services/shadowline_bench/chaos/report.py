"""The printed report of `shadowline bench chaos`: the run, the faults by type, the operations
by outcome, the failover times, each process's memory and descriptors at start and end, and
the checker's own report. Pure: it formats what the run collected.

A failover is a fault after which a write was acknowledged in a newer epoch than the master's
when the fault came, before the next fault began: its time is from the fault to the completion
of that first write on the new master, as a client sees it. A fault on the master that caused
no promotion shows instead how long after it the first write was acknowledged.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shadowline_bench.chaos.history import Operation
from shadowline_bench.chaos.nemesis import Fault
from shadowline_bench.chaos.resources import Usage


@dataclass(frozen=True, slots=True)
class Failover:
    fault: Fault
    seconds: float | None  # fault start -> first ok write after it (None: none before the next)
    instance: str | None
    epoch: int | None
    promoted: bool


def failovers(faults: Sequence[Fault], history: Sequence[Operation]) -> list[Failover]:
    """For each fault that made a new master, or hit the master: when writes came back."""
    acks = sorted(
        (op for op in history if op.is_write and op.outcome == "ok" and op.done is not None),
        key=lambda op: op.done or 0.0,
    )
    found = []
    for n, fault in enumerate(faults):
        until = faults[n + 1].start if n + 1 < len(faults) else float("inf")
        after = [op for op in acks if fault.start <= (op.done or 0.0) < until]
        newer = [op for op in after if (op.epoch or 0) > (fault.epoch or 0)]
        if newer:
            op = newer[0]
            found.append(Failover(fault, (op.done or 0.0) - fault.start, op.instance, op.epoch,
                                  True))  # fmt: skip
        elif fault.target == "master":
            first = next((op for op in after if op.call >= fault.start), None)
            if first is None:
                found.append(Failover(fault, None, None, None, False))
            else:
                seconds = (first.done or 0.0) - fault.start
                found.append(Failover(fault, seconds, first.instance, first.epoch, False))
    return found


@dataclass(frozen=True)
class ChaosReport:
    """Everything a run prints; `text()` is what it prints."""

    seed: int
    minutes: float
    processes: int
    delay: float
    begun: float  # monotonic time the workload started: fault times are shown from it
    faults: Sequence[Fault]
    history: Sequence[Operation]
    checker: str  # the checker's Report.text()
    settle: float | None  # seconds the heal took (None: it did not settle)
    start: Mapping[str, Usage] = field(default_factory=dict)
    end: Mapping[str, Usage] = field(default_factory=dict)
    restarts: Mapping[str, int] = field(default_factory=dict)
    extra: Mapping[str, int] = field(default_factory=dict)  # more operation counts (any reads)
    answers: Sequence[Mapping[str, Any]] = ()  # what writes that were not ok got (workload)
    refusals_unknown: bool = False  # 503 refusals were counted info, not fail

    def text(self) -> str:
        lines = [
            f"chaos run: seed {self.seed}, {self.minutes:g} min, {self.processes} client "
            f"processes, takeover delay {self.delay:g} s"
        ]
        lines += self._faults() + self._operations() + self._failovers()
        settled = "did not settle" if self.settle is None else f"{self.settle:.1f} s"
        lines.append(f"heal -> one master and its shadow in sync: {settled}")
        lines += self._resources()
        lines.append("checker:")
        lines += [f"  {line}" for line in self.checker.splitlines()]
        return "\n".join(lines)

    def _faults(self) -> list[str]:
        by_type = Counter(f"{f.type} {f.target}" for f in self.faults)
        counts = ", ".join(f"{what} {n}" for what, n in sorted(by_type.items()))
        lines = [f"faults injected: {len(self.faults)}" + (f" ({counts})" if counts else "")]
        notes = Counter(f.note for f in self.faults if f.note)
        lines += [f"  {n} x {note}" for note, n in sorted(notes.items())]
        return lines

    def _operations(self) -> list[str]:
        counts = Counter(f"{op.f} {op.outcome}" for op in self.history)
        counts.update(self.extra)
        shown = ", ".join(f"{what} {n}" for what, n in sorted(counts.items()))
        lines = [f"operations by outcome: {shown or 'none'}"]
        if self.refusals_unknown:
            lines.append("  (503 refusals of writes counted unknown, info, not fail)")
        said = Counter(_said(a) for a in self.answers)
        if said:
            lines.append("writes not ok, by answer (plain version conflicts left out):")
            lines += [f"  {n} x {what}" for what, n in said.most_common(8)]
        return lines

    def _failovers(self) -> list[str]:
        found = failovers(self.faults, self.history)
        lines = ["failovers (fault -> first ok write on the new master):"]
        for f in found:
            at = f"{f.fault.type} {f.fault.target} {f.fault.process} at +{f.fault.start - self.begun:.1f} s"
            if f.seconds is None:
                lines.append(f"  {at}: no write acknowledged before the next fault")
            elif f.promoted:
                lines.append(f"  {at}: {f.seconds:.2f} s, {f.instance} in epoch {f.epoch}")
            else:
                lines.append(f"  {at}: no promotion, first ok write after {f.seconds:.2f} s")
        times = [f.seconds for f in found if f.promoted and f.seconds is not None]
        if times:
            lines.append(
                f"  {len(times)} failovers: min {min(times):.2f} s, median "
                f"{statistics.median(times):.2f} s, max {max(times):.2f} s"
            )
        elif not found:
            lines.append("  none")
        return lines

    def _resources(self) -> list[str]:
        lines = ["memory and descriptors (RSS; open fds), start -> end:"]
        for name in sorted(set(self.start) | set(self.end)):
            a, b = self.start.get(name, Usage(None)), self.end.get(name, Usage(None))
            again = self.restarts.get(name, 0)
            restarted = f" (restarted {again}x: end is its last start)" if again else ""
            lines.append(f"  {name:<12} {_usage(a)} -> {_usage(b)}{restarted}")
        return lines


def _said(answer: Mapping[str, Any]) -> str:
    status = answer.get("status")
    error = str(answer.get("error") or "")
    error = error if len(error) <= 90 else error[:87] + "..."
    retry = " (Retry-After)" if answer.get("retry_after") else ""
    return f"{status}{retry}: {error}" if status is not None else error


def _usage(u: Usage) -> str:
    if u.pid is None:
        return "not running"
    group = f", {u.processes} processes" if u.processes > 1 else ""
    return f"{u.rss_kib / 1024:.1f} MiB; {u.fds} fds{group}"
