"""`shadowline bench chaos --minutes N [--seed S]`: a master, its shadow and a watchdog on a
private 3-node RabbitMQ cluster, the recorded workload under the nemesis for N minutes, then
heal, drain, check and print the report; exit code 1 when the checker finds a violation.

The broker cluster is the harness's (shadowline.harness.rabbit_cluster: own ports, data and
cookie; the shared node on 5672 is never touched); each process is given every node, its own
first. Each instance has a private PostgreSQL server of its own (shadowline.harness.postgres),
which the nemesis kills and restarts too; where none can run (no PostgreSQL binaries), the
databases are fresh ones on SHADOWLINE_DATABASE_URL's server, dropped afterwards, and no
database is killed. The history, the faults and every log are kept in the run's directory when the
checker fails or --keep-logs is given: history.jsonl, faults.jsonl, answers.jsonl (what the
writes that were not ok got, but plain conflicts), stores.json (both final stores).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from shadowline import harness
from shadowline.harness import HarnessError, WatchdogProcess, wait_for
from shadowline.harness.postgres import PostgresServer, postgres_problem, private_postgres
from shadowline.harness.rabbit import rabbitmq_problem
from shadowline.harness.rabbit_cluster import RabbitCluster
from shadowline.settings import Settings
from shadowline_bench.chaos.checker import check_run
from shadowline_bench.chaos.history import HistoryWriter, operations
from shadowline_bench.chaos.nemesis import Nemesis
from shadowline_bench.chaos.report import ChaosReport
from shadowline_bench.chaos.resources import Usage, of_group, of_process
from shadowline_bench.chaos.workload import Workload, final_stores
from shadowline_bench.common import fresh_database

TAKEOVER_DELAY = 2.0
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}
NAMES = ("node-a", "node-b")
CALM = 3.0  # seconds of workload on the healed pair before the drain
DRAIN = 30.0  # seconds the processes' last operations may take


@dataclass(frozen=True)
class Options:
    minutes: float
    seed: int
    clients: int = 4
    keep_logs: bool = False
    refusals_unknown: bool = False  # a 503 refusal of a write counts as unknown (workload)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _processes(rabbit: RabbitCluster, databases: list[str], logs: Path) -> harness.HaCluster:
    cluster, password = f"chaos{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    secret = secrets.token_hex(16)
    nodes = [
        harness.instance(
            logs / f"{name}.log",
            name=name,
            cluster=cluster,
            database_url=database,
            password=password,
            secret=secret,
            env={"SHADOWLINE_AMQP_URL": rabbit.urls(n), **TIMING},
        )
        for n, (name, database) in enumerate(zip(NAMES, databases, strict=True))
    ]
    env = {
        **os.environ, **TIMING, "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_AMQP_URL": rabbit.urls(2), "SHADOWLINE_CLUSTER_SECRET": secret,
    }  # fmt: skip
    watchdog = WatchdogProcess(
        env=env, log=logs / "watchdog.log", cluster=cluster, watchdog_name="chaos-watchdog"
    )
    return harness.HaCluster(cluster, password, nodes[0], nodes[1], watchdog)


def usage(cluster: harness.HaCluster, rabbit: RabbitCluster) -> dict[str, Usage]:
    assert cluster.watchdog is not None
    found = {node.name: of_process(node.pid if node.running else None) for node in cluster.nodes}
    found["watchdog"] = of_process(cluster.watchdog.pid if cluster.watchdog.running else None)
    for n, node in enumerate(rabbit.nodes):
        found[f"rabbit-{n}"] = of_group(node.pid)
    return found


async def _set_up(cluster: harness.HaCluster) -> None:
    await asyncio.to_thread(cluster.set_up, 120)
    await asyncio.to_thread(cluster.wait_in_sync, 60)
    await asyncio.to_thread(cluster.start_watchdog, 60)
    await asyncio.sleep(TAKEOVER_DELAY + 0.5)  # every instance heard by the new watchdog


def _verified(cluster: harness.HaCluster, timeout: float = 60) -> None:
    """Until the shadow's GET /ha/verify agrees with its master (every event applied)."""

    def agreed() -> bool:
        with harness.admin(cluster.shadow, cluster.password) as client:
            response = client.get("/ha/verify")
        return response.status_code == 200 and bool(response.json().get("agree"))

    wait_for(agreed, timeout, "the shadow's GET /ha/verify to agree", every=0.5,
             tolerate=(httpx.HTTPError,))  # fmt: skip


async def _drain(workload: Workload, task: asyncio.Task[None]) -> None:
    await asyncio.sleep(CALM)
    workload.stop.set()
    try:
        await asyncio.wait_for(task, DRAIN)
    except TimeoutError:
        say(f"the workload did not drain in {DRAIN:g} s: its open operations count as info")


# One sequence, read top to bottom: set up, measure, fault under load, heal, drain, check.
async def chaos(
    options: Options,
    cluster: harness.HaCluster,
    rabbit: RabbitCluster,
    logs: Path,
    databases: dict[str, PostgresServer],
) -> tuple[ChaosReport, bool]:
    await _set_up(cluster)
    say(f"pair set up and in sync, watchdog watching (logs: {logs})")
    start = usage(cluster, rabbit)
    names = {node.url: node.name for node in cluster.nodes}
    history_path = logs / "history.jsonl"
    with HistoryWriter(history_path) as writer:
        workload = Workload(list(names), names, writer, cluster.password, cluster.cluster,
                            processes=options.clients, seed=options.seed,
                            refusals_unknown=options.refusals_unknown)  # fmt: skip
        task = asyncio.create_task(workload.run())
        begun = time.monotonic()
        nemesis = Nemesis(cluster, rabbit, TAKEOVER_DELAY, logs / "faults.jsonl", options.seed,
                          databases)  # fmt: skip
        say(f"workload and nemesis running for {options.minutes:g} min (seed {options.seed})")
        faults = await asyncio.to_thread(nemesis.run, begun + options.minutes * 60)
        say(f"{len(faults)} faults done; healing")
        settle: float | None = None
        try:
            settle = await asyncio.to_thread(nemesis.heal, 180)
        except HarnessError as error:
            say(f"the pair did not settle: {error}")
        await _drain(workload, task)
    end = usage(cluster, rabbit)
    with (logs / "answers.jsonl").open("wb") as out:
        out.writelines(orjson.dumps(note) + b"\n" for note in workload.answers)
    if settle is not None:
        await asyncio.to_thread(_verified, cluster)
    master, shadow = await final_stores(names, cluster.password)
    (logs / "stores.json").write_bytes(orjson.dumps({"master": master, "shadow": shadow}))
    history = operations(history_path)
    verdict = check_run(history, master, shadow)
    restarts = Counter(f.process for f in faults if f.type == "kill" and f.target != "rabbit")
    report = ChaosReport(
        options.seed, options.minutes, options.clients, TAKEOVER_DELAY, begun, faults, history,
        verdict.text(), settle, start, end, restarts, answers=workload.answers,
        refusals_unknown=options.refusals_unknown,
    )  # fmt: skip
    return report, verdict.ok and settle is not None


async def _databases(
    stack: AsyncExitStack, settings: Settings
) -> tuple[list[str], dict[str, PostgresServer]]:
    """The instances' database URLs, and their private servers by instance name (if any)."""
    problem = postgres_problem()
    if problem is None:
        servers = [stack.enter_context(private_postgres()) for _ in NAMES]
        say("a private PostgreSQL server for each instance started")
        return [s.create_database() for s in servers], dict(zip(NAMES, servers, strict=True))
    say(f"no private PostgreSQL servers ({problem}): no database is killed")
    urls = [
        await stack.enter_async_context(fresh_database(settings.database_url, purpose))
        for purpose in ("chaos_a", "chaos_b")
    ]
    return urls, {}


async def main(settings: Settings, options: Options) -> int:
    problem = rabbitmq_problem()
    if problem is not None:
        say(f"a private RabbitMQ cluster cannot run here: {problem}")
        return 2
    logs = Path(tempfile.mkdtemp(prefix="shadowline-bench-chaos-"))
    rabbit = RabbitCluster(logs / "rabbitmq")
    ok = False
    try:
        await asyncio.to_thread(rabbit.start)
        say(f"3-node RabbitMQ cluster started and joined in {rabbit.started_in:.1f} s")
        async with AsyncExitStack() as stack:
            databases, servers = await _databases(stack, settings)
            cluster = _processes(rabbit, databases, logs)
            try:
                report, ok = await chaos(options, cluster, rabbit, logs, servers)
            finally:
                for problem in await asyncio.shield(asyncio.to_thread(cluster.stop)):
                    say(problem)
        print(report.text())
    finally:
        rabbit.stop()
        if ok and not options.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            say(f"history, faults and logs kept in {logs}")
    return 0 if ok else 1
