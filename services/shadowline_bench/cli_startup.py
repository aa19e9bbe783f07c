"""`shadowline bench cli`: how long the CLI takes before its first request (issue 13).

Each command is a fresh process, timed from spawn to exit with `time.perf_counter`, its CPU
(user + system) from getrusage of the children. The commands take turns run by run, so a busy moment of
the machine costs each of them alike, and `python -c pass` in the same loop is the floor any
Python program pays. `config get` and `ha status` ask 127.0.0.1:9, where nothing listens: the
connection is refused at once, so what is timed is everything before the first request.

Bytecode: an installed program has its .pyc files; a source tree run with
PYTHONDONTWRITEBYTECODE=1 compiles its own modules at every start. By default the runs use a
bytecode cache of their own in a temporary directory (warmed by one run of each, never written
into the tree); --no-pyc runs them with PYTHONDONTWRITEBYTECODE=1 instead.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NOWHERE = "http://127.0.0.1:9"  # the discard port: connection refused, no request answered


@dataclass
class Timings:
    name: str
    argv: list[str]
    expected_exit: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    exits: set[int] = field(default_factory=set)

    def p90(self) -> float:
        ordered = sorted(self.wall)
        return ordered[max(0, round(0.9 * len(ordered)) - 1)]


def _shadowline() -> str:
    """The console script beside this interpreter (a virtualenv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("shadowline")
    return str(beside) if beside.exists() else shutil.which("shadowline") or "shadowline"


def commands() -> list[Timings]:
    cli = _shadowline()
    return [
        Timings("python -c pass", [sys.executable, "-c", "pass"], 0),
        Timings("shadowline --help", [cli, "--help"], 0),
        Timings(
            f"shadowline config get system-mapping x --url {NOWHERE}",
            [cli, "config", "get", "system-mapping", "x", "--url", NOWHERE],
            3,
        ),
        Timings(
            f"shadowline ha status --url {NOWHERE}", [cli, "ha", "status", "--url", NOWHERE], 3
        ),
    ]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of every child waited for so far
    return usage.ru_utime + usage.ru_stime


def _once(timings: Timings, env: dict[str, str], record: bool = True) -> None:
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(timings.argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if record:
        timings.wall.append(wall)
        timings.cpu.append(_children_cpu() - cpu)
        timings.exits.add(done.returncode)


def measure(runs: int, env: dict[str, str]) -> list[Timings]:
    found = commands()
    for timings in found:  # warm-up: bytecode cache, page cache
        _once(timings, env, record=False)
    for _ in range(runs):
        for timings in found:
            _once(timings, env)
    return found


def report(found: list[Timings], runs: int, cached: bool) -> str:
    floor = statistics.median(found[0].wall)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"CLI start-up, {runs} runs each, {os.cpu_count()} CPUs, load average {load}, "
        f"bytecode {'cached' if cached else 'not written (PYTHONDONTWRITEBYTECODE=1)'}",
        f"{'command':<72} {'median':>7} {'p90':>7} {'cpu':>7} {'- pass':>7}",
    ]
    for t in found:
        median = statistics.median(t.wall)
        lines.append(
            f"{t.name:<72} {median:>6.3f}s {t.p90():>6.3f}s {statistics.median(t.cpu):>6.3f}s "
            f"{median - floor:>+6.3f}s"
        )
        if t.exits != {t.expected_exit}:
            lines.append(f"  ! exit codes {sorted(t.exits)}, expected {t.expected_exit}")
    return "\n".join(lines)


def main(runs: int, pyc: bool) -> int:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="shadowline-bench-cli-") as cache:
        if pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        found = measure(runs, env)
    print(report(found, runs, pyc))
    return 0 if all(t.exits == {t.expected_exit} for t in found) else 1
