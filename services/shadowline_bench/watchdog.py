"""`shadowline bench watchdog`: one real watchdog process against N simulated clusters.

The watchdog (`shadowline watchdog --secrets-file`, a secret per cluster) watches N clusters on
the shared broker, each a simulated master+shadow pair (shadowline_bench.watchdog_sim) sending
signed heartbeats at 2 Hz per instance and answering the watchdog's probes. Measured:

1. CPU of the watchdog process (from /proc, % of one core) over a steady window;
2. the masters of a sample of clusters stop, at spread times: per cluster the detection delay
   from the master's last heartbeat to the promote command arriving on the broker, p50/p99/max,
   against the takeover delay (the target: takeover delay + a probe, which fails at once here);
   and the promote commands for clusters whose master never stopped (the target: 0).

Figures are printed, never asserted; the exit code says only whether the run completed (0).
Everything it declared on the broker is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from shadowline.settings import Settings
from shadowline_bench.common import machine_cpu, percentile, process_cpu
from shadowline_bench.watchdog_sim import Simulation, delete_exchanges

CPU_TARGET = 50.0  # % of one core


@dataclass(frozen=True)
class Sizes:
    clusters: int = 1000
    interval: float = 0.5
    steady: float = 30.0
    sample: int = 50
    spread: float = 20.0  # seconds over which the sample's masters stop


def say(line: str) -> None:
    print(line, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _watchdog(
    settings: Settings, secrets_file: Path, log: Path, sizes: Sizes
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SHADOWLINE_AMQP_URL": settings.amqp_url.get_secret_value(),
        "SHADOWLINE_HEARTBEAT_INTERVAL": str(sizes.interval),
        "SHADOWLINE_TAKEOVER_DELAY": str(settings.takeover_delay),
        "SHADOWLINE_CLUSTER_SECRET": secrets.token_hex(32),  # no cluster uses it: each has its own
    }
    command = [sys.executable, "-m", "shadowline", "watchdog", "--name", "bench-watchdog"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "--secrets-file", str(secrets_file)], env=env, stdout=out, stderr=out
        )


async def _wait_watching(log: Path, clusters: int, process: subprocess.Popen[bytes]) -> float:
    start = time.monotonic()
    while (await asyncio.to_thread(log.read_text, errors="replace")).count(
        "] watching ("
    ) < clusters:
        if process.poll() is not None:
            raise RuntimeError(f"the watchdog ended with {process.returncode}; see {log}")
        if time.monotonic() - start > 300:
            raise TimeoutError(f"the watchdog did not watch {clusters} clusters in 300 s")
        await asyncio.sleep(0.5)
    return time.monotonic() - start


async def _cpu_over(pid: int, seconds: float) -> tuple[float, float | None]:
    """(% of one core the process used, % of the whole machine busy) over `seconds`."""
    before, machine = process_cpu(pid), machine_cpu()
    start = time.monotonic()
    await asyncio.sleep(seconds)
    after, machine_after = process_cpu(pid), machine_cpu()
    elapsed = time.monotonic() - start
    if before is None or after is None:
        return float("nan"), None
    busy = None
    if machine and machine_after:
        busy = 100 * (machine_after[0] - machine[0]) / max(1e-9, machine_after[1] - machine[1])
    return 100 * (after - before) / elapsed, busy


async def _failovers(sim: Simulation, sizes: Sizes, delay: float) -> list[str]:
    """Stop the sample's masters at spread times; the clusters stopped."""
    chosen = random.sample(sorted(sim.pairs), min(sizes.sample, len(sim.pairs)))
    moments = sorted(random.uniform(0, sizes.spread) for _ in chosen)
    start = time.monotonic()
    for cluster, moment in zip(chosen, moments, strict=True):
        await asyncio.sleep(max(0.0, start + moment - time.monotonic()))
        sim.stop_master(cluster)
    deadline = time.monotonic() + 4 * delay + 10
    waiting = [c for c in chosen if sim.pairs[c].promote_at is None]
    while waiting and time.monotonic() < deadline:  # polls the records
        await asyncio.sleep(0.1)
        waiting = [c for c in waiting if sim.pairs[c].promote_at is None]
    return chosen


def _report(sim: Simulation, stopped: list[str], delay: float, cpu: tuple[float, float | None],
            failover_cpu: tuple[float, float | None], sizes: Sizes) -> None:  # fmt: skip
    delays = sorted(
        int(1e9 * (p.promote_at - sim.last_master_beat(c)))
        for c in stopped
        if (p := sim.pairs[c]).promote_at is not None
    )
    missing = [c for c in stopped if sim.pairs[c].promote_at is None]
    false = [c for c, p in sim.pairs.items() if c not in stopped and p.promotes]
    rate = 2 * len(sim.pairs) / sizes.interval
    say(f"clusters: {len(sim.pairs)} (master+shadow each, heartbeats every {sizes.interval}s: "
        f"{rate:.0f} heartbeats/s), a secret per cluster")  # fmt: skip
    machine = f"; machine busy {cpu[1]:.0f}%" if cpu[1] is not None else ""
    say(f"watchdog CPU, steady {sizes.steady:.0f}s: {cpu[0]:.1f}% of one core "
        f"(target < {CPU_TARGET:.0f}%){machine}")  # fmt: skip
    per_beat = 1e4 * cpu[0] / max(1.0, sim.rate)
    say(f"  that is {per_beat:.0f} us of CPU per heartbeat heard ({sim.rate:.0f}/s published); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    say(f"watchdog CPU while {len(stopped)} masters stopped: {failover_cpu[0]:.1f}% of one core")
    if delays:
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        say(f"detection delay (last master heartbeat -> promote command on the broker), "
            f"{len(delays)} clusters: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {delays[-1] / 1e6:.0f} ms; "
            f"takeover delay {1000 * delay:.0f} ms (target: about the takeover delay + a probe)")  # fmt: skip
    say(f"clusters stopped without a promote command: {len(missing)} (target 0) {missing[:5]}")
    say(f"promote commands for clusters whose master never stopped: {len(false)} (target 0)")
    resent = sum(sim.pairs[c].promotes - 1 for c in stopped if sim.pairs[c].promotes > 1)
    say(f"promote commands sent again (idempotent by epoch): {resent}")


# Long only because the run is one sequence: start, warm up, measure, fail over, clean up.
async def main(settings: Settings, sizes: Sizes) -> int:
    delay = settings.takeover_delay
    token = secrets.token_hex(3)
    clusters = {f"bench-wd-{token}-{n:04d}": secrets.token_hex(32) for n in range(sizes.clusters)}
    url = settings.amqp_url.get_secret_value()
    say(
        f"bench watchdog: {sizes.clusters} clusters, takeover delay {delay}s, on {url.split('@')[-1]}"
    )
    with tempfile.TemporaryDirectory(prefix="shadowline-bench-watchdog-") as tmp:
        secrets_file = Path(tmp) / "secrets.json"
        secrets_file.write_bytes(orjson.dumps(clusters))
        secrets_file.chmod(0o600)
        log = Path(tmp) / "watchdog.log"
        sim = Simulation(url, clusters, _free_port(), sizes.interval)
        process = None
        try:
            await sim.start()
            process = _watchdog(settings, secrets_file, log, sizes)
            took = await _wait_watching(log, sizes.clusters, process)
            say(f"the watchdog watches all {sizes.clusters} clusters {took:.1f}s after its start")
            await asyncio.sleep(delay + 2)  # every view has heard both instances
            published = sim.published
            cpu = await _cpu_over(process.pid, sizes.steady)
            sim.rate = (sim.published - published) / sizes.steady
            before = process_cpu(process.pid) or 0.0
            started = time.monotonic()
            stopped = await _failovers(sim, sizes, delay)
            spent = (process_cpu(process.pid) or 0.0) - before
            failover_cpu = (100 * spent / (time.monotonic() - started), None)
            _report(sim, stopped, delay, cpu, failover_cpu, sizes)
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if stopped[0] in ln]
            say(f"the watchdog on {stopped[0]}:\n  " + "\n  ".join(lines[-4:]))
            say(f"heartbeats published by the simulation: {sim.published} (largest backlog the "
                f"broker left unread on its connections: {sim.backlog.value} bytes)")  # fmt: skip
            return 0 if process.poll() is None else 1
        finally:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            await sim.close()
            kept = Path(tempfile.gettempdir()) / "shadowline-bench-watchdog.log"
            kept.write_bytes(log.read_bytes() if log.exists() else b"")
            say(f"the watchdog's log: {kept}")
            await delete_exchanges(url, list(clusters))
            say(f"deleted the exchanges of the {len(clusters)} clusters")
