"""Bootstrap of a new shadow from a master that already holds N distinct configuration items.

The master's store is filled in-process before its process starts (a running Instance on its
database, PutItem through the group-commit Writer from many concurrent tasks: the same path as
HTTP writes, without HTTP's cost). Then HA is set up and two moments are timed from the confirm
request on the master:

- image installed: the shadow's /health position equals the master's (the shadow holds the
  master's configuration and streams from there);
- history backfilled: the shadow's store holds every event below the image too. No HTTP answer
  exposes this (/health and /ha do not show `base_position`), so it is read from the shadow's
  own database: store_head.base_position back at 0 while its head is past 0.

Afterwards the shadow's whole log is chain-checked (/audit/verify) and compared with the
master's at its head (/ha/verify): a fast bootstrap that installs the wrong thing is no result.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from shadowline.adapters.db import create_engine
from shadowline.adapters.migrate import upgrade
from shadowline.adapters.store import EventStore
from shadowline.bootstrap import build_instance
from shadowline.domain.commands import PutItem
from shadowline.runtime import running
from shadowline.settings import Settings
from shadowline_bench.common import KIND, METADATA, drive, system_mapping
from shadowline_bench.replication_cluster import MASTER, Pair, pair
from shadowline_bench.replication_cpu import PairMeter

POLL = 0.05


def item(i: int) -> tuple[str, dict[str, Any]]:
    """The i-th of N distinct items (a system mapping of the shared workload's shape)."""
    return f"boot-{i:06d}", system_mapping(i)[1]


@dataclass
class Bootstrap:
    items: int
    fill_s: float
    fill_failures: int
    master_position: int = 0
    confirm_s: float = 0.0
    image_s: float | None = None
    history_s: float | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


async def fill(settings: Settings, database_url: str, items: int) -> tuple[float, int]:
    """(seconds, failures) to append `items` distinct PutItem through an in-process Writer."""
    await asyncio.to_thread(upgrade, database_url)
    own = settings.model_copy(
        update={"database_url": database_url, "instance": MASTER, "admin_password": None}
    )
    instance = build_instance(own)

    async def write(_: int, i: int) -> bool:
        name, value = item(i)
        try:
            await instance.writer.submit(PutItem(KIND, name, value, metadata=METADATA))
        except Exception:  # counted as a failure and reported; the fill goes on
            return False
        return True

    async with running(instance, migrate=False):
        # Twice the batch size in flight: one batch commits while the next one queues up.
        seconds, _, failures = await drive(2 * own.batch_max, 0, items, write)
    return seconds, failures


async def _wait(pair: Pair, target: int, result: Bootstrap, begun: float, patience: float) -> None:
    engine = create_engine(pair.shadow.database_url, pool_size=1)
    store = EventStore(engine)
    try:
        while result.image_s is None or result.history_s is None:
            elapsed = time.perf_counter() - begun
            if elapsed > patience:
                return
            if result.image_s is None and await pair.shadow.position() >= target:
                result.image_s = time.perf_counter() - begun
            if result.history_s is None:
                head = await store.head()
                if head.position > 0 and head.base_position == 0:
                    result.history_s = time.perf_counter() - begun
            await asyncio.sleep(POLL)
    finally:
        await engine.dispose()


async def _check(pair: Pair, target: int) -> dict[str, Any]:
    audit = await pair.shadow.call("GET", "/audit/verify")
    verify = await pair.shadow.call("GET", "/ha/verify")
    return {
        "shadow_log_ok": bool(audit.get("ok")) and audit.get("checked") == target,
        "shadow_log_events": audit.get("checked"),
        "agree_with_master": bool(verify.get("agree")),
        "verify": verify.get("sentence"),
    }


async def bootstrap_run(settings: Settings, items: int, problems: list[str]) -> Bootstrap:
    filled: list[tuple[float, int]] = []

    async def prepare(database_url: str) -> None:
        filled.append(await fill(settings, database_url, items))

    async with pair(settings, "bootstrap", prepare, problems) as the_pair:
        result = Bootstrap(items, *filled[0])
        await the_pair.enable_and_join()
        meter = await PairMeter.start(the_pair)
        begun = time.perf_counter()
        await the_pair.confirm()
        result.confirm_s = time.perf_counter() - begun
        result.master_position = await the_pair.master.position()
        await _wait(the_pair, result.master_position, result, begun, max(120.0, items / 500))
        result.cpu = await meter.stop()
        result.checks = await _check(the_pair, result.master_position)
        return result
