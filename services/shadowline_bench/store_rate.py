"""Store rate in-process: a running Instance on a fresh database, appends through its Writer.

This measures the write path below HTTP: the group-commit writer, the hash chain and the
PostgreSQL transaction. Each submit is one PutItem, acknowledged only after COMMIT. The
instance's background work (snapshots every `snapshot_interval` events) runs as in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shadowline.adapters.migrate import upgrade
from shadowline.adapters.resources import load_config_schemas
from shadowline.bootstrap import Instance, build_instance
from shadowline.domain.commands import PutItem
from shadowline.domain.validation import Catalog
from shadowline.runtime import running
from shadowline.settings import Settings
from shadowline_bench.common import (
    KIND,
    METADATA,
    NAMES,
    CpuMeter,
    Run,
    drive,
    fresh_database,
    system_mapping,
)


def check_workload(count: int) -> None:
    """The workload's values are valid items of the shipped schema (raises InvalidInput)."""
    catalog = Catalog(load_config_schemas())
    for i in (*range(len(NAMES)), count - 1):
        catalog.check(KIND, *system_mapping(i))


def _batches(instance: Instance) -> tuple[float, float]:
    registry = instance.metrics.registry
    count = registry.get_sample_value("shadowline_append_batch_size_count") or 0.0
    total = registry.get_sample_value("shadowline_append_batch_size_sum") or 0.0
    return count, total


async def _measure(instance: Instance, writers: int, start: int, count: int) -> Run:
    errors: list[str] = []

    async def write(_: int, i: int) -> bool:
        name, value = system_mapping(i)
        try:
            await instance.writer.submit(PutItem(KIND, name, value, metadata=METADATA))
        except Exception as error:
            errors.append(f"{error.__class__.__name__}: {error}")
            return False
        return True

    commits_before, events_before = _batches(instance)
    head_before = (await instance.store.head()).position
    meter = await CpuMeter.start(instance.settings.database_url)
    seconds, latencies, failures = await drive(writers, start, count, write)
    cpu = await meter.stop("process")
    commits, events = _batches(instance)
    head = (await instance.store.head()).position
    notes: dict[str, Any] = {
        "commits": int(commits - commits_before),
        "durable_positions": head - head_before,
    }
    if commits > commits_before:
        notes["events_per_commit"] = round((events - events_before) / (commits - commits_before), 1)
    if errors:
        notes["first_error"] = errors[0]
    label = "shadowline store (in-process)"
    return Run(label, writers, len(latencies), seconds, latencies, failures, cpu, notes)


async def store_runs(settings: Settings, count: int, writer_counts: tuple[int, ...]) -> list[Run]:
    """One fresh database; a warm-up, then one run per writer count, one after the other."""
    check_workload(count)
    async with fresh_database(settings.database_url, "store") as url:
        await asyncio.to_thread(upgrade, url)
        own = settings.model_copy(
            update={"database_url": url, "instance": "bench-store", "admin_password": None}
        )
        instance = build_instance(own)
        runs = []
        async with running(instance, migrate=False):
            warm_up = min(200, count)
            await _measure(instance, 8, 0, warm_up)  # pool connections, prepared statements
            start = warm_up
            for writers in writer_counts:
                runs.append(await _measure(instance, writers, start, count))
                start += count
        return runs
