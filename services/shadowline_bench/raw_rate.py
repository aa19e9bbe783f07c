"""The machine's limit for the store's commit pattern: raw asyncpg, none of shadowline's Python.

On a fresh, migrated database and one connection, every argument built before the clock starts:

- `shadowline_append`, the database function the store calls, with 1 event per call (what one
  writer does: one commit per write) and with 32 (one group commit of 32 writers);
- a one-row INSERT per commit into a plain table: the floor of any durable write here.

Each call is a commit (no transaction block, `synchronous_commit` as the server has it), so the
rates are what the database and the driver allow this machine with no Python work per event:
where a store target is above them, the bench shows it is the machine's limit, not our code.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shadowline.adapters.migrate import upgrade
from shadowline.adapters.store_sql import APPEND, columns
from shadowline.domain.events import GENESIS, Event, link, sealed
from shadowline_bench.common import KIND, METADATA, CpuMeter, Run, fresh_database, system_mapping

FUNCTION = "raw asyncpg shadowline_append"
FLOOR = "raw asyncpg 1-row INSERT"
PER_COMMIT = (1, 32)


def _batches(count: int, per_commit: int, start: int, chain: bytes) -> list[tuple[Any, ...]]:
    """The arguments of count // per_commit calls appending events start+1.., chained."""
    now = datetime.now(UTC)
    calls: list[tuple[Any, ...]] = []
    position = start
    for _ in range(count // per_commit):
        batch = []
        for _ in range(per_commit):
            position += 1
            name, value = system_mapping(position)
            event = Event(
                uuid.uuid4(), position, 1, "ConfigPut", KIND, name, position // 1000 + 1, value,
                METADATA, now,
            )  # fmt: skip
            chain = link(chain, event)
            batch.append(sealed(event, chain, None))
        calls.append((position - per_commit, *columns(batch)))
    return calls


async def _timed(url: str, label: str, per_commit: int, calls: list[Any], send: Any) -> Run:
    latencies: list[int] = []
    meter = await CpuMeter.start(url)
    begun = time.perf_counter()
    for args in calls:
        sent = time.perf_counter_ns()
        await send(args)
        latencies.append(time.perf_counter_ns() - sent)
    seconds = time.perf_counter() - begun
    cpu = await meter.stop("process")
    notes = {"events_per_commit": per_commit, "commits": len(calls)}
    return Run(label, per_commit, len(calls) * per_commit, seconds, latencies, 0, cpu, notes)


async def raw_runs(base_url: str, commits: int) -> list[Run]:
    """The function with 1 and 32 events per commit (`commits` calls each), then the one-row
    INSERT floor; a run's `writers` is its events per commit (one connection, one caller)."""
    async with fresh_database(base_url, "raw") as url:
        await asyncio.to_thread(upgrade, url)
        connection = await asyncpg.connect(url)
        try:
            statement = await connection.prepare(APPEND)
            runs, position, chain = [], 0, GENESIS

            async def append(args: tuple[Any, ...]) -> None:
                if await statement.fetchval(*args) is not True:
                    raise RuntimeError("shadowline_append refused a raw batch")

            for per_commit in PER_COMMIT:
                calls = _batches(commits * per_commit, per_commit, position, chain)
                await append(calls[0])  # warm: the function's plans are cached per session
                runs.append(await _timed(url, FUNCTION, per_commit, calls[1:], append))
                position += len(calls) * per_commit
                chain = calls[-1][11][-1]
            await connection.execute("CREATE TABLE bench_floor (id bigint PRIMARY KEY, v jsonb)")
            insert = await connection.prepare("INSERT INTO bench_floor VALUES ($1, $2)")
            rows = [(i, '{"actor": "bench"}') for i in range(commits)]
            runs.append(await _timed(url, FLOOR, 1, rows, lambda row: insert.fetch(*row)))
            return runs
        finally:
            await connection.close()
