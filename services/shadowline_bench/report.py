"""The closing table (markdown-friendly), the targets for reference, and the JSON document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shadowline_bench.common import Run
from shadowline_bench.raw_rate import FUNCTION

STORE = "shadowline store"
HTTP = "shadowline HTTP"
BASELINE = "eventsourcing"


def _find(runs: list[Run], prefix: str, writers: int | None = None) -> Run | None:
    for run in runs:
        if run.name.startswith(prefix) and (writers is None or run.writers == writers):
            return run
    return None


def _cpu(run: Run) -> str:
    cpu, wall = run.cpu, run.cpu.get("wall_s") or 0.0
    if not wall:
        return ""
    parts = [
        f"{label} {100 * cpu[key] / wall:.0f}%"
        for label, key in (
            ("proc", "process_s"),
            ("client", "client_s"),
            ("server", "server_s"),
            ("pg", "postgres_s"),
        )
        if key in cpu
    ]
    if "machine_busy_pct" in cpu:
        parts.append(f"machine {cpu['machine_busy_pct']:.0f}%")
    return ", ".join(parts)


def _row(run: Run) -> str:
    p50, p99 = run.quantiles()
    per_commit = run.notes.get("events_per_commit", "")
    return (
        f"| {run.name} | {run.writers} | {run.ok} | {run.failures} | {run.seconds:.2f} | "
        f"{run.rate:,.0f} | {p50:.2f} | {p99:.2f} | {per_commit} | {_cpu(run)} |"
    )


def _ratios(runs: list[Run]) -> dict[int, float]:
    found = {}
    for writers in (1, 32):
        ours, theirs = _find(runs, STORE, writers), _find(runs, BASELINE, writers)
        if ours and theirs and theirs.rate > 0:
            found[writers] = ours.rate / theirs.rate
    return found


Target = tuple[str, str, str, bool | None]  # (target, measured, limit in the same run, met)
TARGET_FIELDS = ("target", "measured", "limit", "met")


def _limit(target: float, limit: float | None, text: str) -> str:
    if limit is None:
        return ""
    above = " (the target is above it)" if target > limit else ""
    return f"{text}{above}"


def _store_targets(runs: list[Run], ratios: dict[int, float]) -> list[Target]:
    """Issue 15's store targets, each beside the raw asyncpg limit measured in the same run."""
    rows: list[Target] = []
    for writers, target in ((1, 2_500), (32, 20_000)):
        store, raw = _find(runs, STORE, writers), _find(runs, FUNCTION, writers)
        limit = raw.rate if raw else None
        rows.append(
            (
                f"store, {writers} writer{'s' if writers > 1 else ''}: >= {target:,} appends/s",
                f"{store.rate:,.0f}/s" if store else "not measured",
                _limit(target, limit, f"{limit or 0:,.0f}/s: raw asyncpg, the same function, "
                       f"{writers} event{'s' if writers > 1 else ''} per commit"),
                store.rate >= target if store else None,
            )
        )  # fmt: skip
    for writers, times in ((1, 3.0), (32, 25.0)):
        ratio = ratios.get(writers)
        raw, theirs = _find(runs, FUNCTION, writers), _find(runs, BASELINE, writers)
        best = raw.rate / theirs.rate if raw and theirs and theirs.rate > 0 else None
        rows.append(
            (
                f"store / eventsourcing, {writers} writer{'s' if writers > 1 else ''}: "
                f">= {times:.0f}x",
                f"{ratio:.1f}x" if ratio is not None else "not measured",
                _limit(times, best, f"{best:.1f}x: raw asyncpg / eventsourcing") if best else "",
                ratio >= times if ratio is not None else None,
            )
        )
    return rows


def _targets(runs: list[Run], ratios: dict[int, float]) -> list[Target]:
    http = _find(runs, HTTP)
    http_p99 = http.quantiles()[1] if http else None
    return [
        *_store_targets(runs, ratios),
        (
            "HTTP PUT, 16 clients: >= 3,000/s",
            f"{http.rate:,.0f}/s" if http else "not measured",
            "",
            http.rate >= 3_000 if http else None,
        ),
        (
            "HTTP PUT, 16 clients: p99 < 20 ms",
            f"{http_p99:.1f} ms" if http_p99 is not None else "not measured",
            "",
            http_p99 < 20 if http_p99 is not None else None,
        ),
    ]


def _http_cpu_sentence(http: Run, nproc: int) -> str:
    cpu, wall = http.cpu, http.cpu.get("wall_s") or 1.0
    client = cpu.get("client_s", 0.0)
    server, postgres = cpu.get("server_s"), cpu.get("postgres_s")
    sentence = (
        f"HTTP CPU over {wall:.2f}s: {http.notes.get('client', 'HTTP')} clients (this process) "
        f"{client:.2f}s "
        f"({http.notes.get('client_cpu_us_per_request', '?')} us/request, "
        f"{100 * client / wall:.0f}% of one core)"
    )
    if server is not None:
        sentence += f", instance process {server:.2f}s ({100 * server / wall:.0f}% of one core)"
    if postgres is not None:
        sentence += f", its PostgreSQL backends {postgres:.2f}s"
    if "machine_busy_s" in cpu:
        rest = cpu["machine_busy_s"] - client - (server or 0.0) - (postgres or 0.0)
        sentence += (
            f"; the machine was {cpu['machine_busy_pct']:.0f}% busy ({nproc} cores), "
            f"{rest:.2f}s of it other processes (WAL writer, other users of the machine)"
        )
    if client > (server or 0.0) * 0.5:
        sentence += (
            ". The client costs at least half as much CPU as the instance: on a small machine "
            "the HTTP figure is a lower bound of what the instance serves to remote clients"
        )
    return sentence + "."


def report(
    runs: list[Run],
    facts: dict[str, Any],
    skipped: str | None,
    failures: list[str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    ratios = _ratios(runs)
    targets = _targets(runs, ratios)
    say("\n## shadowline bench append\n")
    say(
        f"Machine: {facts['nproc']} CPUs ({facts.get('cpu')}); PostgreSQL "
        f"{facts['postgres_server_version']} (synchronous_commit={facts['postgres_synchronous_commit']}"
        f", fsync={facts['postgres_fsync']}, commit_delay={facts['postgres_commit_delay']}); "
        f"shadowline {facts['shadowline']}, Python {facts['python']}, batch_max {facts['batch_max']}.\n"
    )
    say(
        "| run | writers | acked | failed | seconds | writes/s | p50 ms | p99 ms | events/commit "
        "| CPU (% of one core; machine: % of all) |"
    )
    say("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for run in runs:
        say(_row(run))
    if skipped:
        say(f"\neventsourcing comparison {skipped}")
    if ratios:
        say(
            "\nshadowline / eventsourcing: "
            + ", ".join(f"{w} writer{'s' if w > 1 else ''}: {r:.1f}x" for w, r in ratios.items())
        )
    if http := _find(runs, HTTP):
        say("\n" + _http_cpu_sentence(http, int(facts["nproc"] or 1)))
    say("\n| target (issue 15) | measured | the machine's limit, same run | |")
    say("|---|--:|---|---|")
    for target, figure, limit, met in targets:
        verdict = "" if met is None else ("meets" if met else "BELOW")
        say(f"| {target} | {figure} | {limit} | {verdict} |")
    if failures:
        say("\nFailures:")
        for failure in failures:
            say(f"- {failure}")
    return {
        "machine": facts,
        "runs": [run.as_dict() for run in runs],
        "ratios_shadowline_over_eventsourcing": {str(w): round(r, 2) for w, r in ratios.items()},
        "eventsourcing": skipped or "run",
        "targets": [dict(zip(TARGET_FIELDS, t, strict=True)) for t in targets],
        "failures": failures,
    }
