"""`shadowline bench append`: acknowledged, durable appends, measured and printed.

Four measurements, each on a fresh database of its own that is dropped afterwards:

1. the store in-process (a running Instance; PutItem through the group-commit Writer) with
   1 and with 32 concurrent writers;
2. the machine's limit for that commit pattern: the store's database function and a one-row
   INSERT through raw asyncpg, no shadowline Python (shadowline_bench.raw_rate);
3. HTTP: a real `shadowline instance` process and 16 keep-alive clients sending PUTs;
4. the same store workload through the `eventsourcing` library's PostgreSQL recorder.

The closing table puts each figure beside issue 15's target and, for the store, the limit.

Figures are printed, never asserted: the exit code says only whether every write was
acknowledged and the instance shut down cleanly (0), or not (1).
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import traceback
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shadowline import __version__
from shadowline.adapters.db import create_engine
from shadowline.settings import Settings
from shadowline_bench.common import Run
from shadowline_bench.eventsourcing_rate import eventsourcing_runs, missing
from shadowline_bench.raw_rate import raw_runs
from shadowline_bench.report import report
from shadowline_bench.store_rate import store_runs

if TYPE_CHECKING:  # the module itself needs aiohttp, from the bench extra
    from shadowline_bench.http_rate import Server

WRITERS = (1, 32)
HTTP_CLIENTS = 16
RAW_COMMITS = 2000  # per raw run: ~1 s with 1 event per commit, ~3 s with 32
T = TypeVar("T")


def say(line: str) -> None:
    print(line, flush=True)


async def machine_facts(settings: Settings) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "shadowline": __version__,
        "batch_max": settings.batch_max,
    }
    server = make_url(settings.database_url).set(database="postgres").render_as_string(False)
    engine = create_engine(server, pool_size=1)
    try:
        async with engine.connect() as connection:
            for name in ("server_version", "synchronous_commit", "fsync", "commit_delay"):
                facts[f"postgres_{name}"] = await connection.scalar(text(f"SHOW {name}"))
    finally:
        await engine.dispose()
    return facts


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


async def _phase(title: str, work: Awaitable[T], failures: list[str]) -> T | None:
    say(f"\n== {title}")
    try:
        return await work
    except Exception as error:
        failures.append(f"{title}: {error.__class__.__name__}: {error}")
        traceback.print_exc(file=sys.stderr)
        say(f"   FAILED: {error.__class__.__name__}: {error}")
        return None


async def _runs(title: str, work: Awaitable[list[Run]], failures: list[str]) -> list[Run]:
    """A phase's runs, each printed as it comes (none when the phase failed)."""
    runs = await _phase(title, work, failures) or []
    for run in runs:
        say(run.line())
    return runs


def _lost_or_failed(runs: list[Run]) -> list[str]:
    """Failed writes, and acknowledged writes that the log does not hold (re-read from it)."""
    found = [
        f"{r.name}, {r.writers} writers: {r.failures} writes failed" for r in runs if r.failures
    ]
    for r in runs:
        durable = r.notes.get("durable_positions")
        if durable is not None and durable < r.ok:
            found.append(
                f"{r.name}, {r.writers} writers: {r.ok} acknowledged, {durable} in the log"
            )
    return found


async def _http_run(database_url: str, requests: int) -> tuple[Run, Server]:
    try:
        from shadowline_bench.http_rate import http_run
    except ImportError as error:
        raise RuntimeError(f"{error}: install it with: pip install 'shadowline[bench]'") from error
    return await http_run(database_url, requests, HTTP_CLIENTS)


async def _http_phase(settings: Settings, requests: int, failures: list[str]) -> list[Run]:
    http = await _phase(
        f"HTTP: {requests} PUT from {HTTP_CLIENTS} keep-alive clients to a real instance",
        _http_run(settings.database_url, requests),
        failures,
    )
    if http is None:
        return []
    run, server = http
    say(run.line())
    say(f"   statuses {run.notes['statuses']}; instance exited with code {server.exit_code}")
    if server.exit_code != 0:
        failures.append(f"the instance exited with code {server.exit_code} after SIGTERM")
    return [run]


def _skipped(compare_eventsourcing: bool) -> str | None:
    """Why the eventsourcing comparison does not run, or None."""
    if not compare_eventsourcing:
        return "skipped (--skip-eventsourcing)"
    if (problem := missing()) is not None:
        return f"not run: the eventsourcing library is not installed: {problem}"
    return None


async def main(
    settings: Settings, events: int, http_requests: int, compare_eventsourcing: bool
) -> int:
    if events < 1 or http_requests < 1:
        say("shadowline bench append: --events and --http-requests must be at least 1")
        return 2
    failures: list[str] = []
    facts = await machine_facts(settings)
    say(
        f"shadowline bench append: {events} events per store run, {http_requests} HTTP "
        f"requests; {facts['nproc']} CPUs, PostgreSQL {facts['postgres_server_version']} "
        f"(synchronous_commit={facts['postgres_synchronous_commit']})"
    )
    runs: list[Run] = []

    runs += await _runs(
        f"store in-process: {events} PutItem with 1 and 32 writers",
        store_runs(settings, events, WRITERS),
        failures,
    )
    runs += await _runs(
        f"the limit: raw asyncpg, {RAW_COMMITS} calls of shadowline_append with 1 and 32 events, "
        f"{RAW_COMMITS} one-row INSERTs",
        raw_runs(settings.database_url, RAW_COMMITS),
        failures,
    )

    runs += await _http_phase(settings, http_requests, failures)
    skipped = _skipped(compare_eventsourcing)
    if skipped:
        say(f"\n== eventsourcing comparison {skipped}")
    else:
        runs += await _runs(
            f"eventsourcing PostgresApplicationRecorder: {events} insert_events, 1 and 32 threads",
            eventsourcing_runs(settings.database_url, events, WRITERS),
            failures,
        )

    failures += [
        f"{r.name} with {r.writers}: {r.failures} writes failed" for r in runs if r.failures
    ]
    doc = report(runs, facts, skipped, failures, say)
    if path := os.environ.get("SHADOWLINE_BENCH_JSON"):
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(Path(path).write_bytes, data)
        say(f"\nresults written to {path}")
    return 1 if failures else 0
