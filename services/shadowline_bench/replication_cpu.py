"""CPU used during one measurement by every party of replication on this machine.

The load client (this process), the master and the shadow processes, the PostgreSQL backends
of each database, and RabbitMQ (when its `beam.smp` runs on this machine). On a shared 2-core
machine a low figure is as likely the neighbours' doing as the product's: this says which.
RabbitMQ is shared: its figure includes every other user of the broker during the run.
"""

from __future__ import annotations

import os

from shadowline_bench.common import CpuMeter, process_cpu
from shadowline_bench.replication_cluster import Pair

LABELS = (
    ("client", "client_s"),
    ("master", "master_s"),
    ("master pg", "master_pg_s"),
    ("shadow", "shadow_s"),
    ("shadow pg", "shadow_pg_s"),
    ("rabbitmq", "rabbitmq_s"),
)


def _broker_pids() -> list[int]:
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == "beam.smp":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _broker_cpu(pids: list[int]) -> dict[int, float]:
    found = {pid: process_cpu(pid) for pid in pids}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


class PairMeter:
    def __init__(self, master: CpuMeter, shadow: CpuMeter) -> None:
        self._master, self._shadow = master, shadow
        self._broker_pids = _broker_pids()
        self._broker = _broker_cpu(self._broker_pids)

    @classmethod
    async def start(cls, pair: Pair) -> PairMeter:
        return cls(
            await CpuMeter.start(pair.master.database_url, pair.master.pid),
            await CpuMeter.start(pair.shadow.database_url, pair.shadow.pid),
        )

    async def stop(self) -> dict[str, float]:
        master = await self._master.stop("client")
        shadow = await self._shadow.stop("client")
        used = {"wall_s": master["wall_s"], "client_s": master["client_s"]}
        for side, found in (("master", master), ("shadow", shadow)):
            if "server_s" in found:
                used[f"{side}_s"] = found["server_s"]
            if "postgres_s" in found:
                used[f"{side}_pg_s"] = found["postgres_s"]
        broker = _broker_cpu(self._broker_pids)
        # Brokers that started or stopped meanwhile (other people's tests) are not the one we used.
        lasting = broker.keys() & self._broker.keys()
        if lasting:
            used["rabbitmq_s"] = sum(broker[pid] - self._broker[pid] for pid in lasting)
        if "machine_busy_pct" in master:
            used["machine_busy_pct"] = master["machine_busy_pct"]
        return used


def describe(cpu: dict[str, float]) -> str:
    """'client 12%, master 80%, ...' in % of one core over the run's wall time."""
    wall = cpu.get("wall_s") or 0.0
    if not wall:
        return ""
    parts = [f"{label} {100 * cpu[key] / wall:.0f}%" for label, key in LABELS if key in cpu]
    if "machine_busy_pct" in cpu:
        parts.append(f"machine {cpu['machine_busy_pct']:.0f}% of all cores")
    return ", ".join(parts)
