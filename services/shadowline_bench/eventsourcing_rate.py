"""The same store workload through the `eventsourcing` library's PostgreSQL recorder.

PostgresApplicationRecorder is the fair peer: like shadowline's store it gives every event a
position in one global order (its notification_id) and serializes writers to keep insert order
equal to commit order (`_lock_table`). One StoredEvent per `insert_events` call mirrors one
acknowledged write per request. The library is synchronous, so 32 writers are 32 threads.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from shadowline_bench.common import (
    KIND,
    METADATA,
    NAMES,
    CpuMeter,
    Run,
    drive_threads,
    fresh_database,
    system_mapping,
)

TOPIC = "shadowline_bench:ConfigPut"
LABEL = "eventsourcing PostgresApplicationRecorder"


def missing() -> str | None:
    """Why the comparison cannot run, or None when the library and its driver are importable."""
    try:
        import eventsourcing.postgres  # noqa: F401
    except ImportError as error:
        return f"{error} (install it with: pip install 'shadowline[bench]')"
    return None


class Baseline:
    def __init__(self, url: str, pool_size: int) -> None:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        target = make_url(url)
        self.datastore = PostgresDatastore(
            dbname=target.database or "",
            host=target.host or "127.0.0.1",
            port=target.port or 5432,
            user=target.username or "postgres",
            password=target.password or "",
            pool_size=pool_size,
            max_overflow=2,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()
        # Open every connection now, so that no run pays for connecting.
        self.datastore.pool.open(wait=True, timeout=30)
        self._ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"{KIND}/{name}") for name in NAMES]
        self.errors: list[str] = []

    def write(self, i: int) -> bool:
        from eventsourcing.persistence import StoredEvent

        name, value = system_mapping(i)
        n = i % len(NAMES)
        state = orjson.dumps({"kind": KIND, "name": name, "data": value, "metadata": METADATA})
        # Index i is the (i // 1000)-th write of item n: a unique (originator, version) pair.
        event = StoredEvent(self._ids[n], i // len(NAMES) + 1, TOPIC, state)
        try:
            self.recorder.insert_events([event])
        except Exception as error:
            self.errors.append(f"{error.__class__.__name__}: {error}")
            return False
        return True

    def measure(self, writers: int, start: int, count: int) -> tuple[float, list[int], int]:
        return drive_threads(writers, start, count, self.write)

    def close(self) -> None:
        self.datastore.close()


async def _measure(baseline: Baseline, url: str, writers: int, start: int, count: int) -> Run:
    meter = await CpuMeter.start(url)
    seconds, latencies, failures = await asyncio.to_thread(baseline.measure, writers, start, count)
    cpu = await meter.stop("process")
    notes: dict[str, Any] = {"first_error": baseline.errors[0]} if baseline.errors else {}
    return Run(LABEL, writers, len(latencies), seconds, latencies, failures, cpu, notes)


async def eventsourcing_runs(
    base_url: str, count: int, writer_counts: tuple[int, ...]
) -> list[Run]:
    """One fresh database; a warm-up, then one run per writer count, one after the other."""
    async with fresh_database(base_url, "eventsourcing") as url:
        baseline = await asyncio.to_thread(Baseline, url, max(writer_counts))
        try:
            warm_up = min(200, count)
            await asyncio.to_thread(baseline.measure, 8, 0, warm_up)
            runs, start = [], warm_up
            for writers in writer_counts:
                runs.append(await _measure(baseline, url, writers, start, count))
                start += count
            return runs
        finally:
            await asyncio.to_thread(baseline.close)
