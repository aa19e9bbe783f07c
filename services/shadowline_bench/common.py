"""What every benchmark run shares: the workload, fresh databases, timing and CPU accounting."""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from shadowline.adapters.db import create_engine
from shadowline.adapters.migrate import create_database, drop_database

KIND = "system-mapping"
NAMES = tuple(f"sys-{n:04d}" for n in range(1000))
PROTOCOLS = ("HTTP", "HTTPS", "RFC", "RFCS", "LDAPS", "TCP")
METADATA = {"actor": "bench"}


def system_mapping(i: int) -> tuple[str, dict[str, Any]]:
    """The i-th write of the workload: 1000 items cycled, each write a real change of one."""
    n = i % len(NAMES)
    name = NAMES[n]
    return name, {
        "virtual_host": f"{name}.virtual",
        "virtual_port": 443 if n % 2 else 8443,
        "internal_host": f"{name}.corp.example",
        "internal_port": 1024 + i % 60000,
        "protocol": PROTOCOLS[n % len(PROTOCOLS)],
        "backend_type": "abapSys",
    }


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of nanosecond latencies, in milliseconds."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[rank] / 1e6


@dataclass
class Run:
    """One measured run: `ok` acknowledged writes in `seconds`, one latency per write."""

    name: str
    writers: int
    ok: int
    seconds: float
    latencies_ns: list[int] = field(repr=False)
    failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def quantiles(self) -> tuple[float, float]:
        ordered = sorted(self.latencies_ns)
        return percentile(ordered, 0.50), percentile(ordered, 0.99)

    def line(self) -> str:
        p50, p99 = self.quantiles()
        failed = f", {self.failures} FAILED" if self.failures else ""
        return (
            f"{self.name:<34} {self.writers:>2} x: {self.ok:>6} writes in {self.seconds:6.2f}s = "
            f"{self.rate:8.0f}/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms{failed}"
        )

    def as_dict(self) -> dict[str, Any]:
        p50, p99 = self.quantiles()
        return {
            "name": self.name,
            "writers": self.writers,
            "ok": self.ok,
            "failures": self.failures,
            "seconds": round(self.seconds, 4),
            "rate": round(self.rate, 1),
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "cpu": {k: round(v, 3) for k, v in self.cpu.items()},
            **self.notes,
        }


Write = Callable[[int, int], Awaitable[bool]]  # (worker, index) -> acknowledged?


async def drive(writers: int, start: int, count: int, write: Write) -> tuple[float, list[int], int]:
    """`writers` tasks share the indices start..start+count; each awaits one write at a time."""
    indices = iter(range(start, start + count))
    latencies: list[int] = []
    failures = 0

    async def worker(w: int) -> None:
        nonlocal failures
        for i in indices:  # one shared iterator: next() never interleaves on one event loop
            begun = time.perf_counter_ns()
            if await write(w, i):
                latencies.append(time.perf_counter_ns() - begun)
            else:
                failures += 1

    begun = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(writers)))
    return time.perf_counter() - begun, latencies, failures


def drive_threads(
    writers: int, start: int, count: int, write: Callable[[int], bool]
) -> tuple[float, list[int], int]:
    """The same for a synchronous library: `writers` threads, one blocking write at a time."""
    indices = iter(range(start, start + count))
    latencies: list[int] = []
    failures = [0]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(indices, None)
            if i is None:
                return
            begun = time.perf_counter_ns()
            ok = write(i)
            elapsed = time.perf_counter_ns() - begun
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    failures[0] += 1

    with ThreadPoolExecutor(writers, thread_name_prefix="bench-writer") as pool:
        begun = time.perf_counter()
        for future in [pool.submit(worker) for _ in range(writers)]:
            future.result()
        seconds = time.perf_counter() - begun
    return seconds, latencies, failures[0]


# -- CPU accounting: who burns the 2 cores? --------------------------------------------------


def own_cpu() -> float:
    """CPU seconds (user + system, all threads) of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float | None:
    """CPU seconds of another process, from /proc (None where /proc is not available)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


async def backend_pids(url: str) -> list[int]:
    """PostgreSQL server processes serving connections to the URL's database, now."""
    target = make_url(url)
    engine = create_engine(target.set(database="postgres").render_as_string(False), pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                {"name": target.database},
            )
            return [int(pid) for (pid,) in rows]
    finally:
        await engine.dispose()


class CpuMeter:
    """CPU used during a run: by this process, an instance process, the PostgreSQL backends
    serving the run's database (when PostgreSQL runs on this machine), and the whole machine,
    which on a shared machine includes other people's work."""

    def __init__(self, database_url: str, server_pid: int | None) -> None:
        self._url = database_url
        self._server_pid = server_pid
        self._own = own_cpu()
        self._server = process_cpu(server_pid) if server_pid else None
        self._backends: dict[int, float] = {}
        self._machine = machine_cpu()
        self._wall = time.perf_counter()

    @classmethod
    async def start(cls, database_url: str, server_pid: int | None = None) -> CpuMeter:
        meter = cls(database_url, server_pid)
        meter._backends = await cls._backend_cpu(database_url)
        meter._wall = time.perf_counter()
        return meter

    @staticmethod
    async def _backend_cpu(url: str) -> dict[int, float]:
        found = {pid: process_cpu(pid) for pid in await backend_pids(url)}
        return {pid: cpu for pid, cpu in found.items() if cpu is not None}

    async def stop(self, own_label: str) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        used = {f"{own_label}_s": own_cpu() - self._own, "wall_s": wall}
        machine = machine_cpu()
        if self._server_pid and self._server is not None:
            server = process_cpu(self._server_pid)
            if server is not None:
                used["server_s"] = server - self._server
        backends = await self._backend_cpu(self._url)
        if backends:
            # A backend that connected during the run counts from zero.
            used["postgres_s"] = sum(
                cpu - self._backends.get(pid, 0.0) for pid, cpu in backends.items()
            )
        if self._machine and machine:
            busy, total = machine[0] - self._machine[0], machine[1] - self._machine[1]
            used["machine_busy_s"] = busy
            used["machine_busy_pct"] = 100 * busy / total if total else 0.0
        return used


# -- fresh databases -------------------------------------------------------------------------


def database_url(base: str, name: str) -> str:
    return make_url(base).set(database=name).render_as_string(False)


@asynccontextmanager
async def fresh_database(base: str, purpose: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `base`, dropped afterwards whatever happens."""
    url = database_url(base, f"shadowline_bench_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    await create_database(url)
    try:
        yield url
    finally:
        # Shielded: a Ctrl-C during the run must still drop what we created.
        await asyncio.shield(drop_database(url))
