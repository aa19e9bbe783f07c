"""Replication under load: the master's acknowledged rate, the shadow's apply rate, the lag.

While the load runs, both instances' /health positions are sampled every 0.5 s; the lag is the
master's position minus the shadow's. After the load, the time the shadow needs to reach the
master's final position is measured, and the shadow's lag histogram (event recorded_at on the
master to the shadow's commit, one clock) is diffed against its value before the run, so every
event of the run counts, those applied during the catch-up included.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shadowline_bench.replication_cluster import Pair
from shadowline_bench.replication_cpu import PairMeter
from shadowline_bench.replication_load import (
    Connection,
    Outcome,
    PutRequests,
    closed_loop,
    open_loop,
)
from shadowline_bench.replication_metrics import Histogram, Scrape

SAMPLE_EVERY = 0.5
# In sync mode a write is in flight for the whole round trip to the shadow: at 1,000/s and a
# 30 ms round trip that is 30 at once, so the bound must be well above that to not be the limit.
PACED_CONNECTIONS = 64


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the load began
    master: int
    shadow: int
    relayed: int  # the master's relay cursor: published and confirmed by the broker
    queued: int | None  # ready in the shadow's queue, not yet delivered to it

    @property
    def lag(self) -> int:
        return max(0, self.master - self.shadow)


@dataclass
class LoadRun:
    name: str
    connections: int
    outcome: Outcome
    samples: list[Sample]
    catch_up_s: float | None
    lag: Histogram
    replicated: float
    cpu: dict[str, float] = field(default_factory=dict)
    modes: tuple[str, str] = ("?", "?")  # the master's replication mode before and after

    @property
    def window(self) -> float:
        return self.samples[-1].t - self.samples[0].t

    def _rate(self, moved: int) -> float:
        return moved / self.window if self.window > 0 else 0.0

    @property
    def master_rate(self) -> float:
        return self._rate(self.samples[-1].master - self.samples[0].master)

    @property
    def apply_rate(self) -> float:
        return self._rate(self.samples[-1].shadow - self.samples[0].shadow)

    def lag_slope(self) -> float:
        """Least-squares growth of the sampled lag, in events per second."""
        n = len(self.samples)
        mean_t = sum(s.t for s in self.samples) / n
        mean_lag = sum(s.lag for s in self.samples) / n
        spread = sum((s.t - mean_t) ** 2 for s in self.samples)
        if not spread:
            return 0.0
        return sum((s.t - mean_t) * (s.lag - mean_lag) for s in self.samples) / spread


async def _sample(pair: Pair, begun: float) -> Sample:
    master, shadow, (relayed, queued) = await asyncio.gather(
        pair.master.position(), pair.shadow.position(), pair.pipeline.read()
    )
    return Sample(time.perf_counter() - begun, master, shadow, relayed, queued)


async def _sampler(pair: Pair, begun: float, samples: list[Sample], stop: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
        if stop.is_set():
            return
        samples.append(await _sample(pair, begun))


async def _settled_scrape(pair: Pair, before: Scrape, applied: int) -> Scrape:
    """The shadow's metrics once they count every event it applied (observed after commit)."""
    deadline = time.monotonic() + 5
    while True:
        scrape = await pair.shadow.scrape()
        if scrape.replicated - before.replicated >= applied or time.monotonic() > deadline:
            return scrape
        await asyncio.sleep(0.1)


async def _mode(pair: Pair) -> str:
    """sync: a write is acknowledged once the shadow applied it; async: after the commit."""
    return str((await pair.master.call("GET", "/ha")).get("replication"))


async def measure(
    pair: Pair,
    name: str,
    connections: list[Connection],
    load: Callable[[list[Connection]], Awaitable[Outcome]],
    patience: float,
) -> LoadRun:
    mode_before = await _mode(pair)
    try:
        before = await pair.shadow.scrape()
        meter = await PairMeter.start(pair)
        begun = time.perf_counter()
        samples = [await _sample(pair, begun)]
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sampler(pair, begun, samples, stop))
        try:
            outcome = await load(connections)
        finally:
            stop.set()
            await sampler
        samples.append(await _sample(pair, begun))
        cpu = await meter.stop()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    mode_after = await _mode(pair)
    catch_up = await pair.wait_caught_up(patience)
    head = await pair.shadow.position()
    after = await _settled_scrape(pair, before, head - samples[0].shadow)
    return LoadRun(
        name,
        len(connections),
        outcome,
        samples,
        catch_up,
        after.lag.minus(before.lag),
        after.replicated - before.replicated,
        cpu,
        (mode_before, mode_after),
    )


class Workload:
    """The master's PUT workload, its index carried on from run to run (each write a change)."""

    def __init__(self, pair: Pair) -> None:
        self.requests = PutRequests(pair.master.url, "admin", pair.password)
        self.next = 0

    async def warm_up(self, pair: Pair, seconds: float = 1.0) -> None:
        """Connections, the auth cache, prepared statements and the relay's channel, warm."""
        connections = self.requests.connections(4)
        try:
            outcome = await closed_loop(self.requests, connections, self.next, seconds)
        finally:
            await asyncio.gather(*(c.close() for c in connections))
        self.next = outcome.next_index
        await pair.wait_caught_up(60)

    async def paced(self, pair: Pair, rate: float, seconds: float) -> LoadRun:
        count, start = round(rate * seconds), self.next
        self.next += count

        def load(connections: list[Connection]) -> Awaitable[Outcome]:
            return open_loop(self.requests, connections, start, rate, count)

        name = f"paced {rate:,.0f}/s for {seconds:g}s (open loop)"
        connections = self.requests.connections(PACED_CONNECTIONS)
        return await measure(pair, name, connections, load, patience=max(60.0, 4 * seconds))

    async def flat_out(self, pair: Pair, clients: int, seconds: float) -> LoadRun:
        start = self.next

        async def load(connections: list[Connection]) -> Outcome:
            outcome = await closed_loop(self.requests, connections, start, seconds)
            self.next = outcome.next_index
            return outcome

        name = f"maximum rate, {clients} clients for {seconds:g}s"
        connections = self.requests.connections(clients)
        return await measure(pair, name, connections, load, patience=max(120.0, 10 * seconds))
