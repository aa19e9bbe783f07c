"""Memory (RSS) and open file descriptors of the processes of a chaos run, from /proc (Linux).

A shadowline process is one pid; a RabbitMQ node is its whole process group (the start script,
the Erlang VM, epmd's and the port programs), summed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Usage:
    """One process (or group) at one moment; `pid` None: it was not running."""

    pid: int | None
    rss_kib: int = 0
    fds: int = 0
    processes: int = 0


def _rss_kib(pid: int) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a zombie has no VmRSS


def _fds(pid: int) -> int:
    return len(os.listdir(PROC / str(pid) / "fd"))


def of_process(pid: int | None) -> Usage:
    if pid is None:
        return Usage(None)
    try:
        return Usage(pid, _rss_kib(pid), _fds(pid), 1)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return Usage(None)


def of_group(pgid: int | None) -> Usage:
    """The sum over every process whose process group is `pgid`."""
    if pgid is None:
        return Usage(None)
    rss = fds = count = 0
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp
            if int(fields[2]) != pgid:
                continue
            pid = int(entry.name)
            rss, fds, count = rss + _rss_kib(pid), fds + _fds(pid), count + 1
    return Usage(pgid, rss, fds, count) if count else Usage(None)
