"""`shadowline bench replication`: a master and its shadow under load, measured and printed.

Two pairs of real `shadowline instance` processes, each instance on a fresh database of its
own, each pair in a cluster of its own (broker names deleted, databases dropped afterwards):

1. a pair with HA set up: after a warm-up, an open-loop paced run (default 1,000 PUT/s for
   10 s) and a closed-loop run at the master's maximum rate (16 clients for T seconds): the
   master's acknowledged rate, the shadow's apply rate over the same window, the sampled lag
   in events and the catch-up time, and the end-to-end lag p50/p99 from the shadow's histogram;
2. a master filled with N distinct items before it starts, then a new shadow: the time from
   confirm to the image installed and to the history backfilled.

Figures are printed, never asserted: the exit code says only whether every phase ran, every
write was acknowledged and every instance shut down cleanly (0), or not (1).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from shadowline.settings import Settings
from shadowline_bench.append import machine_facts
from shadowline_bench.replication_bootstrap import Bootstrap, bootstrap_run
from shadowline_bench.replication_cluster import pair
from shadowline_bench.replication_report import bootstrap_lines, report, run_lines
from shadowline_bench.replication_runs import LoadRun, Workload

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    seconds: float  # the maximum-rate run; 0 skips it
    paced_rate: float
    paced_seconds: float  # 0 skips the paced run
    items: int  # the bootstrap; 0 skips it
    clients: int = 16


FULL = Sizes(seconds=30, paced_rate=1000, paced_seconds=10, items=100_000)
QUICK = Sizes(seconds=4, paced_rate=1000, paced_seconds=3, items=2_000)


def say(line: str) -> None:
    print(line, flush=True)


async def _phase(title: str, work: Awaitable[T], failures: list[str]) -> T | None:
    say(f"\n== {title}")
    try:
        return await work
    except Exception as error:
        failures.append(f"{title}: {error.__class__.__name__}: {error}")
        traceback.print_exc(file=sys.stderr)
        say(f"   FAILED: {error.__class__.__name__}: {error}")
        return None


async def _load_runs(
    settings: Settings, sizes: Sizes, problems: list[str], runs: list[LoadRun]
) -> None:
    """Appends each run to `runs` as it completes, so a later failure keeps the earlier ones."""
    async with pair(settings, "load", problems=problems) as the_pair:
        await the_pair.set_up_ha()
        workload = Workload(the_pair)
        await workload.warm_up(the_pair)
        if sizes.paced_seconds > 0:
            runs.append(await workload.paced(the_pair, sizes.paced_rate, sizes.paced_seconds))
            for line in run_lines(runs[-1]):
                say(line)
        if sizes.seconds > 0:
            runs.append(await workload.flat_out(the_pair, sizes.clients, sizes.seconds))
            for line in run_lines(runs[-1]):
                say(line)


async def _bootstrap(settings: Settings, items: int, problems: list[str]) -> Bootstrap:
    result = await bootstrap_run(settings, items, problems)
    for line in bootstrap_lines(result):
        say(line)
    return result


def _write_failures(runs: list[LoadRun], boot: Bootstrap | None) -> list[str]:
    found = [
        f"{r.name}: {r.outcome.failed} writes failed {dict(r.outcome.statuses)}"
        for r in runs
        if r.outcome.failed
    ]
    if boot is not None:
        if boot.fill_failures:
            found.append(f"bootstrap fill: {boot.fill_failures} writes failed")
        if boot.image_s is None or boot.history_s is None:
            found.append("bootstrap: the shadow did not finish within the patience")
        if not (boot.checks.get("shadow_log_ok") and boot.checks.get("agree_with_master")):
            found.append(f"bootstrap: the shadow's copy failed its checks: {boot.checks}")
    found += [f"{r.name}: the shadow did not catch up" for r in runs if r.catch_up_s is None]
    return found


async def main(settings: Settings, sizes: Sizes) -> int:
    if (
        min(sizes.seconds, sizes.paced_seconds, sizes.items) < 0
        or sizes.paced_rate <= 0
        or sizes.clients < 1
    ):
        say("shadowline bench replication: sizes must be >= 0, --paced-rate and --clients > 0")
        return 2
    failures: list[str] = []
    facts = await machine_facts(settings)
    say(
        f"shadowline bench replication: paced {sizes.paced_rate:,.0f}/s for "
        f"{sizes.paced_seconds:g}s, maximum rate with {sizes.clients} clients for "
        f"{sizes.seconds:g}s, bootstrap of {sizes.items:,} items; {facts['nproc']} CPUs"
    )
    runs: list[LoadRun] = []
    if sizes.seconds > 0 or sizes.paced_seconds > 0:
        await _phase(
            "replication under load (master and shadow processes, HA set up)",
            _load_runs(settings, sizes, failures, runs),
            failures,
        )
    boot: Bootstrap | None = None
    if sizes.items > 0:
        boot = await _phase(
            f"bootstrap of a new shadow from a master holding {sizes.items:,} items",
            _bootstrap(settings, sizes.items, failures),
            failures,
        )
    failures += _write_failures(runs, boot)
    report(runs, boot, facts, failures, say)
    return 1 if failures else 0
