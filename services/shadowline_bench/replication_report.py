"""What `shadowline bench replication` prints: a paragraph per run, then the markdown tables."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from shadowline_bench.common import percentile
from shadowline_bench.replication_bootstrap import Bootstrap
from shadowline_bench.replication_cpu import describe
from shadowline_bench.replication_metrics import Histogram, ms
from shadowline_bench.replication_runs import LoadRun, Sample

Say = Callable[[str], None]
TARGET_ITEMS = 100_000
TARGET_PACED = 1_000.0
QUANTILES = (
    "Lag p50/p99: histogram_quantile-style linear interpolation within the buckets of the "
    "shadow's shadowline_replication_lag_seconds (from the event's recorded_at on the master "
    "to the shadow's commit, one clock), diffed over the run: a figure is only as fine as the "
    "bucket that holds it."
)


def _lag(h: Histogram) -> str:
    low, high = h.max_bucket()
    return (
        f"p50 {ms(h.quantile(0.5))} ms, p99 {ms(h.quantile(0.99))} ms, mean {ms(h.mean)} ms, "
        f"max in ({ms(low)}, {ms(high)}] ms, over {h.count:,.0f} events"
    )


def _where(x: Sample) -> str:
    queued = "?" if x.queued is None else f"{x.queued:,}"
    return (
        f"at {x.t:.1f}s: master position {x.master:,}, relay cursor (confirmed by the broker) "
        f"{x.relayed:,}, ready in the shadow's queue {queued}, shadow position {x.shadow:,}"
    )


def run_lines(run: LoadRun) -> list[str]:
    o = run.outcome
    ordered = sorted(o.latencies_ns)
    lines = [
        f"{run.name}, {run.connections} connections: {o.acked:,} acked, {o.failed} failed "
        f"{dict(o.statuses) if o.failed else ''}in {o.seconds:.2f}s = {o.rate:,.0f}/s; "
        f"client latency p50 {percentile(ordered, 0.5):.1f} ms, p99 {percentile(ordered, 0.99):.1f} ms"
    ]
    if o.start_delays_ns:
        late = sorted(o.start_delays_ns)
        lines[0] += (
            f" (from the due time); start delay p99 {percentile(late, 0.99):.1f} ms, "
            f"max {late[-1] / 1e6:.1f} ms"
        )
    s = run.samples
    lines += [
        f"   replication mode on the master before/after: {run.modes[0]}/{run.modes[1]}",
        f"   over the same {run.window:.2f}s window: master appended "
        f"{s[-1].master - s[0].master:,} = {run.master_rate:,.0f}/s, shadow applied "
        f"{s[-1].shadow - s[0].shadow:,} = {run.apply_rate:,.0f}/s "
        f"(replicated_events_total counted {run.replicated:,.0f} by the end)",
        f"   lag samples every 0.5s (events): first {s[0].lag}, last {s[-1].lag}, max "
        f"{max(x.lag for x in s)}, trend {run.lag_slope():+,.0f} events/s; caught up "
        + (f"{run.catch_up_s:.2f}s" if run.catch_up_s is not None else "NOT")
        + " after the load stopped",
        f"   end-to-end lag: {_lag(run.lag)}",
        f"   where the events were at the largest lag: {_where(max(s, key=lambda x: x.lag))}",
        f"   CPU during the load: {describe(run.cpu)}",
    ]
    return lines


def bootstrap_lines(b: Bootstrap) -> list[str]:
    def timed(value: float | None) -> str:
        return f"{value:.2f}s" if value is not None else "NOT reached"

    fill_rate = b.items / b.fill_s if b.fill_s else 0.0
    return [
        f"filled the master with {b.items:,} items in-process in {b.fill_s:.2f}s "
        f"({fill_rate:,.0f}/s, {b.fill_failures} failed); master at position {b.master_position:,}",
        f"   from the confirm request (answered in {b.confirm_s:.2f}s): image installed "
        f"(shadow /health position = master's) {timed(b.image_s)}, history backfilled "
        f"(shadow base_position 0) {timed(b.history_s)}",
        f"   checks: shadow log chain-verified over {b.checks.get('shadow_log_events')} events: "
        f"{b.checks.get('shadow_log_ok')}; {b.checks.get('verify')}",
        f"   CPU from confirm to backfilled: {describe(b.cpu)}",
    ]


def _row(run: LoadRun) -> str:
    s, h = run.samples, run.lag
    catch_up = f"{run.catch_up_s:.2f}" if run.catch_up_s is not None else "not"
    return (
        f"| {run.name}, {run.modes[1]} | {run.outcome.rate:,.0f} | {run.master_rate:,.0f} | "
        f"{run.apply_rate:,.0f} | {s[0].lag} / {s[-1].lag} / {max(x.lag for x in s)} | "
        f"{catch_up} | {ms(h.quantile(0.5))} | {ms(h.quantile(0.99))} | "
        f"{ms(h.max_bucket()[1])} | {describe(run.cpu)} |"
    )


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("meets" if met else "BELOW")


def _targets(
    paced: LoadRun | None, flat: LoadRun | None, boot: Bootstrap | None
) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    if flat is not None:
        keeps_up = flat.apply_rate >= 0.99 * flat.master_rate and flat.catch_up_s is not None
        rows.append(
            (
                "apply rate >= master append rate (lag does not grow)",
                f"{flat.apply_rate:,.0f}/s vs {flat.master_rate:,.0f}/s, lag trend "
                f"{flat.lag_slope():+,.0f} events/s"
                + (" (sync: the master waits for the shadow)" if flat.modes[1] == "sync" else ""),
                keeps_up,
            )
        )
    if paced is not None:
        p99 = paced.lag.quantile(0.99)
        rate = paced.outcome.rate
        exact = math.isclose(rate, TARGET_PACED, rel_tol=0.05)
        note = "" if exact else f" (at {rate:,.0f}/s acked, not 1,000/s)"
        rows.append(
            (
                "p99 lag < 50 ms at 1,000 events/s",
                f"{ms(p99)} ms{note}",
                p99 < 0.05 if exact else None,
            )
        )
    if boot is not None:
        figure = (
            f"image {boot.image_s:.2f}s" if boot.image_s is not None else "image not reached"
        ) + (f", history {boot.history_s:.2f}s" if boot.history_s is not None else "")
        exact = boot.items == TARGET_ITEMS
        if not exact:
            figure += f" ({boot.items:,} items, not 100,000)"
        in_time = boot.image_s is not None and boot.image_s < 10
        rows.append(("bootstrap of 100,000 items < 10 s", figure, in_time if exact else None))
    return rows


def report(
    runs: list[LoadRun],
    boot: Bootstrap | None,
    facts: dict[str, Any],
    failures: list[str],
    say: Say,
) -> None:
    paced = next((r for r in runs if r.name.startswith("paced")), None)
    flat = next((r for r in runs if r.name.startswith("maximum")), None)
    say("\n## shadowline bench replication\n")
    say(
        f"Machine: {facts['nproc']} CPUs ({facts.get('cpu')}); PostgreSQL "
        f"{facts['postgres_server_version']} (synchronous_commit="
        f"{facts['postgres_synchronous_commit']}); shadowline {facts['shadowline']}, Python "
        f"{facts['python']}. Master and shadow are two `shadowline instance` processes with a "
        "database each; the load client shares the machine.\n"
    )
    if runs:
        say(
            "| run | acked/s | master appended/s | shadow applied/s | lag first/last/max "
            "(events) | catch-up s | lag p50 ms | lag p99 ms | max lag bucket <= ms "
            "| CPU (% of one core) |"
        )
        say("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for run in runs:
            say(_row(run))
        say(f"\n{QUANTILES}")
    if boot is not None:
        say("\n| bootstrap | items | fill s | confirm -> image s | confirm -> history s |")
        say("|---|--:|--:|--:|--:|")
        image = f"{boot.image_s:.2f}" if boot.image_s is not None else "not reached"
        history = f"{boot.history_s:.2f}" if boot.history_s is not None else "not reached"
        say(f"| new shadow | {boot.items:,} | {boot.fill_s:.2f} | {image} | {history} |")
    say("\n| target (from the issue, for reference) | measured | |")
    say("|---|---|---|")
    for target, figure, met in _targets(paced, flat, boot):
        say(f"| {target} | {figure} | {_verdict(met)} |")
    if failures:
        say("\nFailures:")
        for failure in failures:
            say(f"- {failure}")
