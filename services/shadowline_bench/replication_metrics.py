"""The shadow's replication metrics, read from its /metrics text: counters and the lag histogram.

Quantiles come from the difference of two scrapes of the cumulative histogram, interpolated
linearly inside the bucket that holds the rank, as Prometheus' histogram_quantile() does: a
figure is only as fine as the buckets around it, which is why the bucket bounds are printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LAG = "shadowline_replication_lag_seconds"
REPLICATED = "shadowline_replicated_events_total"


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram: (upper bound, observations <= it), +Inf last; and the sum."""

    buckets: tuple[tuple[float, float], ...]
    total: float

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def minus(self, before: Histogram) -> Histogram:
        earlier = dict(before.buckets)
        return Histogram(
            tuple((le, n - earlier.get(le, 0.0)) for le, n in self.buckets),
            self.total - before.total,
        )

    def quantile(self, q: float) -> float:
        """histogram_quantile(q): linear inside the bucket; the top finite bound past it."""
        if self.count <= 0:
            return math.nan
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower  # as Prometheus: the highest finite bucket's upper bound
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = le, cumulative
        return lower

    def max_bucket(self) -> tuple[float, float]:
        """(lower, upper] bounds of the highest bucket that holds an observation."""
        lower = 0.0
        for le, cumulative in self.buckets:
            if cumulative >= self.count:
                return lower, le
            lower = le
        return lower, math.inf

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else math.nan


@dataclass(frozen=True)
class Scrape:
    replicated: float
    lag: Histogram


def _value(line: str) -> float:
    return float(line.rsplit(" ", 1)[1])


def parse(text: str) -> Scrape:
    replicated, total = 0.0, 0.0
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{REPLICATED} "):
            replicated = _value(line)
        elif line.startswith(f'{LAG}_bucket{{le="'):
            bound = line[len(LAG) + 12 :].split('"', 1)[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), _value(line)))
        elif line.startswith(f"{LAG}_sum "):
            total = _value(line)
    buckets.sort()
    return Scrape(replicated, Histogram(tuple(buckets), total))


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return "inf" if math.isinf(seconds) else f"{1000 * seconds:.1f}"
