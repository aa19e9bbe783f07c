"""One trial of each kind, on the reused pair: a failover after SIGKILL, a switch of roles.

Failover: while the load runs, SIGKILL the master; the failover time runs from the kill to the
first write acknowledged in a newer epoch (only the promoted shadow can acknowledge one). Along
the way: when the watchdog logged that it probes the master and that it promotes the shadow
(its log's wall clock, to the millisecond), and when the shadow's /health first says master.
Then every write acknowledged during the trial must be on the new master at its position, with
its value; the killed instance is restarted and rejoins as the new shadow.

Switch roles: while the load runs, POST /ha/switch-roles on the master. The unavailability is
the longest interval without an acknowledged write from the last ack before the request to the
first ack in the new epoch; the handover time is what the API answers ("seconds").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from shadowline_bench.failover_cluster import HaCluster
from shadowline_bench.failover_load import Ack, FollowingLoad, lost_acks
from shadowline_bench.replication_cluster import Node

WARM = 1.0  # seconds of load before the kill or the switch
AFTER = 0.3  # seconds of load kept on the new master, so its first acks are not alone
PATIENCE = 30.0


@dataclass(frozen=True)
class FailoverTrial:
    killed: str
    seconds: float  # kill -> first ack in the new epoch
    promoted_s: float | None  # kill -> the shadow's /health says master
    probe_s: float | None  # kill -> the watchdog logs that it probes the master
    promote_s: float | None  # kill -> the watchdog logs the promote command
    mode: str | None  # the master's replication mode just before the kill
    acked: int
    lost: tuple[str, ...]
    rejoin_s: float  # restart of the killed instance -> the pair connected and sync again


@dataclass(frozen=True)
class SwitchTrial:
    master: str
    unavailable_s: float
    handover_s: float  # the API's "seconds"
    answered_s: float  # the handover began -> the accepted POST answered, on the client
    syncing: int  # 409 "the shadow is syncing" answers before the accepted request
    aborted: int  # 409 "the shadow refused the handover" answers before it
    acked: int
    lost: tuple[str, ...]


async def _epoch(node: Node) -> int:
    return int((await node.call("GET", "/health"))["epoch"])


async def _watch_promotion(cluster: HaCluster, node: Node, since: float) -> float | None:
    """Seconds after `since` at which `node`'s /health first says master (polled every 20 ms)."""
    while time.monotonic() - since < PATIENCE:
        found = await cluster.health(node)
        if found is not None and found.get("role") == "master":
            return time.monotonic() - since
        await asyncio.sleep(0.02)
    return None


class Loaded:
    """The load running, from the current master on, for the duration of an `async with`."""

    def __init__(self, load: FollowingLoad, url: str) -> None:
        self.load, self.url = load, url
        self.mark = len(load.acks)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Loaded:
        self._task = asyncio.create_task(self.load.run(self.url, self._stop))
        await asyncio.sleep(WARM)
        if len(self.load.acks) == self.mark:
            raise RuntimeError(f"no write acknowledged by {self.url} within {WARM}s of load")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def acks(self) -> list[Ack]:
        return self.load.acks[self.mark :]


async def failover_trial(cluster: HaCluster, load: FollowingLoad) -> FailoverTrial:
    await cluster.wait_in_sync()
    old, new = cluster.master, cluster.shadow
    epoch = await _epoch(old)
    async with Loaded(load, old.url) as run:
        mode = (await old.call("GET", "/ha")).get("replication")
        offset = cluster.watchdog.size()
        wall, killed = time.time(), time.monotonic()
        cluster.kill_master()
        promoted = asyncio.create_task(_watch_promotion(cluster, new, killed))
        try:
            first = await load.wait_ack(run.mark, epoch, PATIENCE)
            await asyncio.sleep(AFTER)
        except BaseException:
            promoted.cancel()
            raise
    promoted_s = await promoted
    lost = await lost_acks(new, run.acks)
    cluster.swap()
    restarted = time.monotonic()
    await cluster.restart(old)
    await cluster.wait_in_sync()

    def logged(words: str) -> float | None:
        at = cluster.watchdog.logged_at(words, offset)
        return None if at is None else at - wall

    return FailoverTrial(
        old.name,
        first.received - killed,
        promoted_s,
        logged("probing it directly"),
        logged(": promoting shadow"),
        mode,
        len(run.acks),
        tuple(lost),
        time.monotonic() - restarted,
    )


def unavailability(acks: list[Ack], asked: float, first_new: Ack) -> float:
    """The longest interval without an ack, from the last ack before `asked` to `first_new`."""
    moments = sorted(a.received for a in acks if a.received <= first_new.received)
    before = [t for t in moments if t <= asked]
    start = before[-1] if before else asked
    window = [t for t in moments if t >= start]
    return max((b - a for a, b in pairwise(window)), default=0.0)


async def _switch_roles(node: Node) -> tuple[dict[str, Any], float, int, int]:
    """POST /ha/switch-roles until accepted: (answer, when the handover began, refusals as
    `syncing`, handovers the shadow refused).

    Two refusals are retried, a few ms later, as an operator would retry them; both leave the
    master writable. Under write load the master reports its shadow `syncing` whenever a write
    is in flight (domain.ha.shadow_state wants the shadow's position >= the master's), and
    switch roles refuses a shadow that is not `connected`. And the handover reads its fork
    position while writes admitted before its fence are still queued in the writer, so the
    shadow may apply past it and refuse ("the master handed over at position N, this shadow
    is at M"). Both are counted and printed. A `syncing` refusal comes before the master
    fences itself and stops no write; an aborted handover does, so the time returned is that of
    the first request that was not refused as `syncing`."""
    deadline = time.monotonic() + PATIENCE
    syncing = aborted = 0
    fenced: float | None = None
    while True:
        asked = time.monotonic()
        response = await node.http.post("/ha/switch-roles", json={})
        if response.status_code == 200:
            return response.json(), fenced or asked, syncing, aborted
        if response.status_code == 409 and "is syncing" in response.text:
            syncing += 1
        elif response.status_code == 409 and "refused the handover" in response.text:
            aborted += 1
            fenced = fenced or asked
        else:
            deadline = 0
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"POST /ha/switch-roles on {node.name} after {syncing + aborted} refusals: "
                f"{response.status_code} {response.text}"
            )
        await asyncio.sleep(0.01)


async def switch_trial(cluster: HaCluster, load: FollowingLoad) -> SwitchTrial:
    await cluster.wait_in_sync()
    old, new = cluster.master, cluster.shadow
    epoch = await _epoch(old)
    async with Loaded(load, old.url) as run:
        answer, asked, syncing, aborted = await _switch_roles(old)
        answered = time.monotonic()
        first = await load.wait_ack(run.mark, epoch, PATIENCE)
        await asyncio.sleep(AFTER)
    lost = await lost_acks(new, run.acks)
    cluster.swap()
    return SwitchTrial(
        old.name,
        unavailability(run.acks, asked, first),
        float(answer["seconds"]),
        answered - asked,
        syncing,
        aborted,
        len(run.acks),
        tuple(lost),
    )
