"""`shadowline bench failover`: how long writes stop when the master dies or hands over.

A master, its shadow and a watchdog run as real processes (heartbeat 0.5 s, takeover delay
2 s), each instance on a fresh database, in a cluster of its own; a few clients write through
the whole run and follow the master. Two measurements on the same pair, the roles alternating:

1. failover: N times, SIGKILL the master; the time from the kill to the first write
   acknowledged by the promoted shadow, and the acknowledged writes missing on it afterwards
   (the killed instance then restarts and rejoins as the shadow; the next trial waits until
   the pair is connected and sync again);
2. switch roles: M times, POST /ha/switch-roles on the master; the longest interval without
   an acknowledged write around the handover, and the handover time the API answers.

Figures are printed, never asserted: the exit code says only whether every trial ran and every
process shut down cleanly (0), or not (1). A lost write is a figure, printed against its target.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass

from shadowline.settings import Settings
from shadowline_bench.append import machine_facts
from shadowline_bench.failover_cluster import HaCluster, ha_cluster
from shadowline_bench.failover_load import FollowingLoad, lost_acks
from shadowline_bench.failover_report import failover_line, report, switch_line
from shadowline_bench.failover_trials import (
    FailoverTrial,
    SwitchTrial,
    failover_trial,
    switch_trial,
)


@dataclass(frozen=True)
class Sizes:
    trials: int
    switches: int
    clients: int = 4


FULL = Sizes(trials=20, switches=10)
QUICK = Sizes(trials=3, switches=3)


def say(line: str) -> None:
    print(line, flush=True)


def _failed(what: str, error: Exception, failures: list[str]) -> None:
    failures.append(f"{what}: {error.__class__.__name__}: {error}")
    traceback.print_exc(file=sys.stderr)
    say(f"   FAILED: {error.__class__.__name__}: {error}")


async def _trials(
    cluster: HaCluster,
    load: FollowingLoad,
    sizes: Sizes,
    failovers: list[FailoverTrial],
    switches: list[SwitchTrial],
    failures: list[str],
) -> None:
    """A failed trial ends its phase: the pair's roles are then not known to be sound."""
    if sizes.trials:
        say(f"\n== failover after SIGKILL of the master, {sizes.trials} trials")
    for n in range(1, sizes.trials + 1):
        try:
            failovers.append(await failover_trial(cluster, load))
        except Exception as error:
            _failed(f"failover trial {n}", error, failures)
            return
        say(failover_line(n, failovers[-1]))
    if sizes.switches:
        say(f"\n== switch roles under load, {sizes.switches} trials")
    for n in range(1, sizes.switches + 1):
        try:
            switches.append(await switch_trial(cluster, load))
        except Exception as error:
            _failed(f"switch trial {n}", error, failures)
            return
        say(switch_line(n, switches[-1]))


async def main(settings: Settings, sizes: Sizes, keep_logs: bool = False) -> int:
    if min(sizes.trials, sizes.switches) < 0 or sizes.clients < 1:
        say("shadowline bench failover: --trials and --switches must be >= 0, --clients > 0")
        return 2
    facts = {**await machine_facts(settings), "clients": sizes.clients}
    say(
        f"shadowline bench failover: {sizes.trials} failovers, {sizes.switches} switches of "
        f"roles, {sizes.clients} clients; {facts['nproc']} CPUs"
    )
    failures: list[str] = []
    failovers: list[FailoverTrial] = []
    switches: list[SwitchTrial] = []
    final_lost: int | None = None
    try:
        async with ha_cluster(settings, failures) as cluster:
            cluster.keep_logs = keep_logs
            load = FollowingLoad([n.url for n in cluster.nodes], cluster.password, sizes.clients)
            await _trials(cluster, load, sizes, failovers, switches, failures)
            lost = any(t.lost for t in failovers) or any(t.lost for t in switches)
            cluster.keep_logs |= bool(failures) or lost  # the evidence for a report
            if not failures:
                await cluster.wait_in_sync()
                final_lost = len(await lost_acks(cluster.master, load.acks))
    except Exception as error:
        _failed("the cluster", error, failures)
    report(failovers, switches, final_lost, facts, failures, say)
    return 1 if failures else 0
