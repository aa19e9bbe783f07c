"""What `shadowline bench failover` prints: a line per trial, then the markdown table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shadowline_bench.common import percentile
from shadowline_bench.failover_trials import FailoverTrial, SwitchTrial

Say = Callable[[str], None]


def _s(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}s"


def _lost(lost: tuple[str, ...], shown: int = 3) -> str:
    more = f"\n       ... and {len(lost) - shown} more" if len(lost) > shown else ""
    return "".join(f"\n       LOST: {line}" for line in lost[:shown]) + more


def failover_line(n: int, t: FailoverTrial) -> str:
    return (
        f"   {n:>2}. killed {t.killed} ({t.mode}): first ack on the new master after "
        f"{t.seconds:.3f}s (watchdog probes {_s(t.probe_s)}, promotes {_s(t.promote_s)}, "
        f"/health master {_s(t.promoted_s)}); {t.acked} acked, {len(t.lost)} lost; "
        f"rejoined in sync after {t.rejoin_s:.1f}s" + _lost(t.lost)
    )


def switch_line(n: int, t: SwitchTrial) -> str:
    return (
        f"   {n:>2}. switched from {t.master}: no ack for {1000 * t.unavailable_s:.0f} ms; "
        f"API seconds {1000 * t.handover_s:.0f} ms (answered after "
        f"{1000 * t.answered_s:.0f} ms; before it {t.syncing} refused as syncing, "
        f"{t.aborted} aborted as the shadow was past the fork); {t.acked} acked, "
        f"{len(t.lost)} lost" + _lost(t.lost)
    )


def _quantiles(values: Sequence[float | None]) -> tuple[int, float, float, float] | None:
    """(count, p50, p99, max) in seconds, nearest rank, over the values that were measured."""
    ordered = sorted(int(v * 1e9) for v in values if v is not None)
    if not ordered:
        return None
    return (
        len(ordered),
        percentile(ordered, 0.5) / 1e3,
        percentile(ordered, 0.99) / 1e3,
        ordered[-1] / 1e9,
    )


def _row(
    label: str,
    values: Sequence[float | None],
    target: str = "",
    met: bool | None = None,
    ms: bool = False,
) -> str:
    q = _quantiles(values)
    verdict = "" if met is None else ("meets" if met else "MISSES")
    if q is None:
        return f"| {label} | 0 | | | | {target} | {verdict} |"
    n, p50, p99, top = q

    def cell(v: float) -> str:
        return f"{1000 * v:.0f} ms" if ms else f"{v:.2f} s"

    return f"| {label} | {n} | {cell(p50)} | {cell(p99)} | {cell(top)} | {target} | {verdict} |"


def _verdict(trials: Sequence[object], lost: int) -> str:
    return "" if not trials else "meets" if lost == 0 else "MISSES"


def _failover_rows(trials: list[FailoverTrial]) -> list[str]:
    q = _quantiles([t.seconds for t in trials])
    met = None if q is None else q[1] <= 2.5 and q[2] <= 3.0
    lost, acked = sum(len(t.lost) for t in trials), sum(t.acked for t in trials)
    sync = sum(1 for t in trials if t.mode == "sync")
    return [
        _row(
            "failover: SIGKILL -> first ack on the new master",
            [t.seconds for t in trials],
            "p50 <= 2.5 s, p99 <= 3 s",
            met,
        ),
        _row("... SIGKILL -> the watchdog probes the master", [t.probe_s for t in trials]),
        _row("... SIGKILL -> the watchdog sends promote", [t.promote_s for t in trials]),
        _row("... SIGKILL -> the shadow's /health says master", [t.promoted_s for t in trials]),
        _row("killed master restarted -> rejoined, connected, sync", [t.rejoin_s for t in trials]),
        f"| acked writes lost in the failovers (sync at the kill: {sync}/{len(trials)}) | "
        f"{len(trials)} | {lost} of {acked:,} | | | 0 | {_verdict(trials, lost)} |",
    ]


def _switch_rows(trials: list[SwitchTrial]) -> list[str]:
    q = _quantiles([t.unavailable_s for t in trials])
    lost, acked = sum(len(t.lost) for t in trials), sum(t.acked for t in trials)
    return [
        _row(
            "switch roles: longest interval without an ack",
            [t.unavailable_s for t in trials],
            "max <= 500 ms",
            None if q is None else q[3] <= 0.5,
            ms=True,
        ),
        _row(
            'switch roles: handover (the API\'s "seconds")',
            [t.handover_s for t in trials],
            ms=True,
        ),
        _row(
            "switch roles: handover began -> POST answered (client)",
            [t.answered_s for t in trials],
            ms=True,
        ),
        f"| acked writes lost in the switches | {len(trials)} | {lost} of {acked:,} | | | 0 | "
        f"{_verdict(trials, lost)} |",
    ]


def report(
    failovers: list[FailoverTrial],
    switches: list[SwitchTrial],
    final_lost: int | None,
    facts: dict[str, Any],
    failures: list[str],
    say: Say,
) -> None:
    say("\n## shadowline bench failover\n")
    say(
        f"Machine: {facts['nproc']} CPUs ({facts.get('cpu')}); PostgreSQL "
        f"{facts['postgres_server_version']} (synchronous_commit="
        f"{facts['postgres_synchronous_commit']}, fsync={facts['postgres_fsync']}); shadowline "
        f"{facts['shadowline']}, Python {facts['python']}. Master, shadow and watchdog with "
        "SHADOWLINE_HEARTBEAT_INTERVAL=0.5 and SHADOWLINE_TAKEOVER_DELAY=2; "
        f"{facts['clients']} clients following the master.\n"
    )
    say("| measure | trials | p50 | p99 | max | target (for reference) | |")
    say("|---|--:|--:|--:|--:|---|---|")
    for line in _failover_rows(failovers) + _switch_rows(switches):
        say(line)
    say(
        "\nPercentiles are nearest-rank: with fewer than 100 trials p99 is the maximum. The "
        "failover is timed on the client, from the SIGKILL to the first write acknowledged in "
        "the new epoch; the watchdog's steps come from its log's wall clock."
    )
    if switches:
        say(
            f"Before the accepted requests, switch roles was refused "
            f"{sum(t.syncing for t in switches)} times as the shadow was `syncing` (a write in "
            f"flight) and aborted {sum(t.aborted for t in switches)} times as the shadow was "
            "past the fork; each was retried after 10 ms. An aborted handover counts in the "
            "unavailability (it is timed from the first request that fenced the master)."
        )
    if final_lost is not None:
        total = sum(t.acked for t in failovers) + sum(t.acked for t in switches)
        say(
            f"All {total:,} acknowledged writes checked again on the final master: "
            f"{final_lost} missing."
        )
    if failures:
        say("\nFailures:")
        for failure in failures:
            say(f"- {failure}")
