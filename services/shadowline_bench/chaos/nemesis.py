"""The nemesis of a chaos run: one fault at a time, at random intervals drawn from a seed (the
same seed plays the same sequence of faults again), each healed before the next.

The faults: kill -9 of the master, the shadow or the watchdog, started again after a pause as a
service manager would; SIGSTOP then SIGCONT of one of them, paused 0.3 to 1.5 x the takeover
delay; kill -9 of one node of the 3-node RabbitMQ cluster and its restart; SIGSTOP and SIGCONT
of a RabbitMQ node (a partition, as its peers and clients see it); kill -9 of the master's or
the shadow's own PostgreSQL server (postmaster and backends) and its restart (crash recovery),
when the run gave each instance a private server (shadowline.harness.postgres). "master" and
"shadow" are the roles when the fault comes (GET /health), not the names the pair started with.

Every fault is recorded as a JSON line: type, target, process, start, end (the heal begun) and
healed (the target back: healthy, watching, or rejoined), on the monotonic clock of the
workload's history. `heal` brings everything back and waits for one master with its shadow
connected and in sync.

Not built yet (issue 12, item 3): network cuts (one direction or both, DROP), clock steps of
+-30 s, the master's database read-only or its disk full.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from shadowline.harness import HaCluster, InstanceProcess, wait_for
from shadowline.harness.cluster import in_sync
from shadowline.harness.postgres import PostgresServer
from shadowline.harness.rabbit import RabbitNode
from shadowline.harness.rabbit_cluster import RabbitCluster

ROLES = ("master", "shadow", "watchdog")
KINDS = ("kill", "pause", "kill-rabbit", "pause-rabbit", "kill-postgres")
GAPS = (2.0, 6.0)  # seconds of calm before each fault
DOWN = (1.0, 4.0)  # seconds a killed instance or watchdog stays down
RABBIT_DOWN = (2.0, 8.0)  # seconds a killed RabbitMQ node stays down
RABBIT_PAUSE = (1.0, 8.0)  # seconds a RabbitMQ node stays paused (net_ticktime is 5)
POSTGRES_DOWN = (1.0, 6.0)  # seconds a killed PostgreSQL server stays down
HOLDS = {
    "kill": DOWN,
    "kill-rabbit": RABBIT_DOWN,
    "pause-rabbit": RABBIT_PAUSE,
    "kill-postgres": POSTGRES_DOWN,
}  # the pauses scale with the takeover delay instead


@dataclass(frozen=True, slots=True)
class Planned:
    """A fault to come: after `gap` s of calm, `type` on `target` for `hold` s."""

    gap: float
    type: str
    target: str
    hold: float


def plan(seed: int, delay: float, postgres: bool = False) -> Iterator[Planned]:
    """The endless sequence of faults of `seed`, for a takeover delay of `delay` s; `postgres`:
    the instances' PostgreSQL servers are the run's own, to be killed too."""
    rng = random.Random(seed)
    choices = [(kind, role) for kind in KINDS[:2] for role in ROLES]
    choices += [("kill-rabbit", "rabbit"), ("pause-rabbit", "rabbit")]
    if postgres:
        choices += [("kill-postgres", "master"), ("kill-postgres", "shadow")]
    while True:
        gap = round(rng.uniform(*GAPS), 3)
        kind, target = rng.choice(choices)
        if target == "rabbit":
            target = f"rabbit-{rng.randrange(3)}"
        hold = rng.uniform(0.3, 1.5) * delay if kind == "pause" else rng.uniform(*HOLDS[kind])
        yield Planned(gap, kind, target, round(hold, 3))


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault as it was done (monotonic times): `end` when its heal began, `healed` when the
    target was back; `process` names what was hit (instance, watchdog or broker node)."""

    type: str
    target: str
    process: str
    start: float
    end: float
    healed: float
    epoch: int | None = None  # the master's epoch when the fault came
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_faults(path: Path | str) -> list[Fault]:
    lines = Path(path).read_bytes().splitlines()
    return [Fault(**orjson.loads(line)) for line in lines if line.strip()]


def roles(cluster: HaCluster) -> tuple[InstanceProcess, InstanceProcess, int | None]:
    """(master, shadow, the master's epoch) by GET /health now; with no master answering, the
    instance of the newest epoch (or the pair's own order) counts as the master."""
    seen = [(node, node.health() or {}) for node in cluster.nodes]
    seen.sort(key=lambda n: (n[1].get("role") != "master", -int(n[1].get("epoch") or 0)))
    (master, doc), (shadow, _) = seen
    return master, shadow, doc.get("epoch")


class Nemesis:
    """Does the planned faults to `cluster` and `rabbit` (blocking: run it in a thread)."""

    def __init__(
        self,
        cluster: HaCluster,
        rabbit: RabbitCluster,
        delay: float,
        log: Path,
        seed: int,
        databases: Mapping[str, PostgresServer] | None = None,
    ) -> None:
        """`databases`: each instance's own PostgreSQL server by instance name, if it has one."""
        self.cluster, self.rabbit, self.delay = cluster, rabbit, delay
        self.log = log
        self.databases = dict(databases or {})
        self.plan = plan(seed, delay, postgres=bool(self.databases))
        self.faults: list[Fault] = []

    def run(self, until: float) -> list[Fault]:
        """Faults until the monotonic time `until` (the one under way is finished and healed)."""
        for planned in self.plan:
            time.sleep(max(0.0, min(planned.gap, until - time.monotonic())))
            if time.monotonic() >= until:
                break
            fault = self.inject(planned)
            self.faults.append(fault)
            with self.log.open("ab") as out:
                out.write(orjson.dumps(fault.as_dict()) + b"\n")
        return self.faults

    def inject(self, planned: Planned) -> Fault:
        master, shadow, epoch = roles(self.cluster)
        if planned.type in ("kill-rabbit", "pause-rabbit"):
            node = self.rabbit.nodes[int(planned.target.rsplit("-", 1)[1])]
            return self._rabbit(planned, node, epoch)
        watchdog = self.cluster.watchdog
        assert watchdog is not None, "a chaos run has a watchdog"
        process = {"master": master, "shadow": shadow, "watchdog": watchdog}[planned.target]
        if planned.type == "kill-postgres":
            return self._postgres(planned, self.databases[process.name], process.name, epoch)
        start = time.monotonic()
        if planned.type == "pause":
            process.signal(signal.SIGSTOP)
            time.sleep(planned.hold)
            end = time.monotonic()
            process.signal(signal.SIGCONT)
            return Fault(planned.type, planned.target, process.name, start, end, end, epoch)
        process.kill()  # SIGKILL, reaped
        time.sleep(planned.hold)
        end = time.monotonic()
        if isinstance(process, InstanceProcess):
            self.cluster.restart(process, timeout=120)
        else:
            self.cluster.start_watchdog(timeout=60)
        return Fault(
            planned.type, planned.target, process.name, start, end, time.monotonic(), epoch
        )

    def _rabbit(self, planned: Planned, node: RabbitNode, epoch: int | None) -> Fault:
        start = time.monotonic()
        note = ""
        if planned.type == "kill-rabbit":
            self.rabbit.kill(node)
            time.sleep(planned.hold)
            end = time.monotonic()
            self.rabbit.restart(node, timeout=120)
        else:
            self.rabbit.pause(node)
            time.sleep(planned.hold)
            end = time.monotonic()
            healed_itself = self.rabbit.resume(node, timeout=120)
            note = "" if healed_itself else "partition recorded: the node's app restarted"
        return Fault(
            planned.type, planned.target, node.name, start, end, time.monotonic(), epoch, note
        )

    def _postgres(
        self, planned: Planned, server: PostgresServer, name: str, epoch: int | None
    ) -> Fault:
        start = time.monotonic()
        server.kill()  # the postmaster and every backend, reaped
        time.sleep(planned.hold)
        end = time.monotonic()
        server.start(timeout=120)  # crash recovery
        return Fault(planned.type, planned.target, name, start, end, time.monotonic(), epoch)

    def heal(self, timeout: float = 120) -> float:
        """Everything resumed and running, the broker clustered, then one master with its shadow
        in sync; the seconds it took."""
        begun = time.monotonic()
        watchdog = self.cluster.watchdog
        assert watchdog is not None
        for process in (*self.cluster.nodes, watchdog):
            if process.running:
                process.signal(signal.SIGCONT)
        self.rabbit.heal(timeout)
        for server in self.databases.values():
            if not server.running:
                server.start(timeout)
        for node in self.cluster.nodes:
            if not node.running:
                self.cluster.restart(node, timeout)
        if not watchdog.running:
            self.cluster.start_watchdog(timeout)
        self.settle(timeout)
        return time.monotonic() - begun

    def settle(self, timeout: float) -> None:
        """Until one instance is master and the other its shadow, connected and in sync."""

        def settled() -> bool:
            master, shadow, _ = roles(self.cluster)
            return in_sync(master, shadow, self.cluster.password)

        wait_for(settled, timeout, "one master and its shadow in sync", every=0.5)
        master, _, _ = roles(self.cluster)
        if master is not self.cluster.master:
            self.cluster.swap()
