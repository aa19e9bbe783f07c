"""A master, its shadow and a watchdog on a private 3-node RabbitMQ cluster (issue 11), every
process given the comma-separated list of the nodes (its own node first: the master node 0, the
shadow node 1, the watchdog node 2), and broker nodes taken away under a sync write load.

Losing one node changes nothing visible beyond a bounded blip (DESIGN.md, "Beyond one
machine"): the master moves to another node within its lease, nobody is promoted, no
acknowledged write is lost, the shadow stays in sync; the quorum queues keep a replica on every
node. A master killed while a node is down still fails over; a node cut off from the others
(SIGSTOP: silent to its clients and to its peers) never yields two masters. The blips are
printed, not asserted: only correctness is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shadowline import harness
from shadowline.adapters.broker import BrokerLink, Names
from shadowline.harness import WatchdogProcess
from tests.conftest import ADMIN_PASSWORD
from tests.e2e import rabbit_cluster as rabbit_cluster_fixtures
from tests.e2e.conftest import Pair, Process, make_process
from tests.e2e.failover_fixtures import (
    HA_ENV,
    HaCluster,
    Watchdog,
    WriteLoad,
    assert_every_ack_is_on,
    assert_single_promotion,
    health_of,
    in_order,
    longest_gap,
    promotions,
    verify_agrees,
    wait_for,
    wait_role,
)
from tests.e2e.rabbit import RabbitNode
from tests.e2e.rabbit_cluster import RabbitCluster
from tests.integration import chained

rabbit_cluster = rabbit_cluster_fixtures.rabbit_cluster
broker_cluster = rabbit_cluster_fixtures.broker_cluster


@pytest.fixture
async def ha(
    db_factory: Callable[[], Awaitable[str]], broker_cluster: RabbitCluster, tmp_path: Path
) -> AsyncIterator[HaCluster]:
    """Master (node-a, broker node 0 first), shadow (node-b, node 1 first) and watchdog (node 2
    first) of a cluster of the test's own, not started: call `set_up()`."""
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    suffix = cluster[-4:]  # instance names of the test's own: connection names do not repeat
    master, shadow = [
        make_process(
            await db_factory(),
            tmp_path / f"{name}.log",
            name=f"{name}-{suffix}",
            cluster=cluster,
            **HA_ENV,
            SHADOWLINE_AMQP_URL=broker_cluster.urls(first),
        )
        for first, name in enumerate(("node-a", "node-b"))
    ]
    watchdog_env = {
        **os.environ,
        **HA_ENV,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_CLUSTER_SECRET": master.env["SHADOWLINE_CLUSTER_SECRET"],
        "SHADOWLINE_AMQP_URL": broker_cluster.urls(2),
    }
    watchdog = Watchdog(watchdog_env, tmp_path / "watchdog.log", cluster)
    found = HaCluster(Pair(master, shadow, cluster), watchdog)
    try:
        yield found
    finally:
        watchdog.stop()
        found.resume_all()
        for process in (shadow, master):
            process.stop()


def _link(process: Process) -> str:
    """The connection name of an instance's broker link (heartbeats, events, commands)."""
    return f"shadowline {process.name}"


def _set_up(ha: HaCluster) -> None:
    """Master and shadow with HA confirmed and sync, the watchdog watching (it starts beside
    them: it learns who is master from the heartbeats)."""
    ha.watchdog.start()
    ha.set_up(watchdog=False)
    ha.watchdog.wait_watching()


def _node_of(cluster: RabbitCluster, process: Process) -> RabbitNode | None:
    """The broker node the instance says (GET /ha) it is connected to now; None if none."""
    doc = harness.cluster.ha(process, ADMIN_PASSWORD)
    address = ((doc or {}).get("broker") or {}).get("node")
    return cluster.node_at(address) if address else None


def _load(ha: HaCluster) -> WriteLoad:
    return WriteLoad([ha.master.url, ha.shadow.url]).start()


def _moved_off(cluster: RabbitCluster, process: Process, node: RabbitNode) -> RabbitNode:
    """Wait until the instance says it is connected to another node than `node`; that node."""

    def elsewhere() -> RabbitNode | None:
        found = _node_of(cluster, process)
        return found if found is not node else None

    return wait_for(elsewhere, 30, f"{process.name} to connect to another broker node", every=0.2)


def _print_blip(what: str, load: WriteLoad, fault: float, until: float) -> None:
    after = [a.received for a in load.acks if a.sent >= fault]
    first = min(after) - fault if after else float("nan")
    refused = [a for a in load.answers if fault <= a.sent <= until]
    print(
        f"\n{what}: longest gap between acknowledged writes {longest_gap(load.acks, fault, until) * 1000:.0f} ms, "
        f"first write acknowledged {first * 1000:.0f} ms after it, {len(refused)} refused or failed, "
        f"{len(load.acks)} acknowledged in all"
    )


def _assert_no_refusal_after_recovery(load: WriteLoad, fault: float) -> None:
    """The blip is bounded: once a write sent after the fault was acknowledged, no write sent
    after that acknowledgement was refused."""
    after = [a.received for a in load.acks if a.sent >= fault]
    assert after, "no write acknowledged after the fault"
    recovered = min(after)
    late = [a for a in load.answers if a.sent > recovered]
    assert not late, f"{len(late)} writes refused after the master recovered: {late[:5]}"


def _assert_nobody_promoted(ha: HaCluster, load: WriteLoad) -> None:
    assert health_of(ha.master)["role"] == "master"
    assert health_of(ha.master)["epoch"] == 1
    assert health_of(ha.shadow)["role"] == "shadow"
    assert promotions(ha.master) == []
    assert {a.epoch for a in load.acks} == {1}
    assert {a.url for a in load.acks} == {ha.master.url}


def _assert_in_sync_with_every_ack(ha: HaCluster, master: Process, load: WriteLoad) -> None:
    shadow = ha.shadow if master is ha.master else ha.master
    ha.wait_sync(master)
    assert_every_ack_is_on(master, load.acks)
    verify_agrees(shadow)
    assert_every_ack_is_on(shadow, load.acks)


def test_the_master_outlives_its_broker_node_killed_unpromoted_and_fails_over_when_killed_too(
    ha: HaCluster, broker_cluster: RabbitCluster
) -> None:
    _set_up(ha)
    node = broker_cluster.node_of(_link(ha.master))  # as the broker sees it
    assert _node_of(broker_cluster, ha.master) is node  # as the master says
    load = _load(ha)
    try:
        load.wait_acks(50, timeout=20)
        broker_cluster.kill(node)
        killed = time.monotonic()
        moved = _moved_off(broker_cluster, ha.master, node)
        load.wait_acks(50, timeout=30, since=killed)
        until = time.monotonic()
    finally:
        load.stop()
    _print_blip(f"kill -9 of {node.name} (the master's node)", load, killed, until)
    _assert_no_refusal_after_recovery(load, killed)
    _assert_nobody_promoted(ha, load)
    _assert_in_sync_with_every_ack(ha, ha.master, load)
    assert broker_cluster.node_of(_link(ha.master), asked=moved) is moved

    # The master killed as well, the broker node still down: the watchdog fails over.
    second = _load(ha)
    try:
        second.wait_acks(50, timeout=20)
        # In sync mode when it dies: what is tested is the failover of a master whose shadow
        # holds every acknowledged write (killed in async mode, it may leave writes the shadow
        # lacks, and the watchdog rightly refuses to promote then).
        ha.wait_sync(ha.master)
        ha.master.signal(signal.SIGKILL)
        killed = time.monotonic()
        promoted = wait_role(ha.shadow, "master", 2, timeout=20)
        second.wait_acks(50, timeout=20, since=promoted)
        until = time.monotonic()
    finally:
        second.stop()
    print(f"\nkill -9 of the master with {node.name} down -> promoted in {promoted - killed:.2f}s")
    _print_blip("the master killed with a broker node down", second, killed, until)
    assert ha.master.wait() == -signal.SIGKILL
    assert any(a.epoch == 2 and a.url == ha.shadow.url for a in second.acks)
    assert_every_ack_is_on(ha.shadow, load.acks + second.acks)
    assert_single_promotion(ha.shadow)


def _quorum_queues(ha: HaCluster) -> set[str]:
    """The cluster's durable queues, all quorum queues (the instances' command queues are
    exclusive classic ones: they go with their connection)."""
    prefix = f"shadowline.{ha.cluster}"
    return {f"{prefix}.dead-letter", f"{prefix}.config-commands",
            f"{prefix}.replication.{ha.shadow.name}"}  # fmt: skip


def _replicas(cluster: RabbitCluster, ha: HaCluster, asked: RabbitNode) -> dict[str, Any]:
    """type, members and online members of each of the cluster's quorum queues."""
    found = cluster.queues(asked)
    return {
        q: (found[q]["type"], set(found[q]["members"]), set(found[q]["online"]))
        if q in found
        else None
        for q in _quorum_queues(ha)
    }


def test_a_node_stopped_and_started_again_leaves_every_quorum_queue_a_replica_on_each_node(
    ha: HaCluster, broker_cluster: RabbitCluster
) -> None:
    _set_up(ha)
    every = {n.name for n in broker_cluster.nodes}
    whole = dict.fromkeys(_quorum_queues(ha), ("quorum", every, every))
    assert _replicas(broker_cluster, ha, broker_cluster.nodes[0]) == whole
    node = _node_of(broker_cluster, ha.master)
    assert node is not None
    load = _load(ha)
    try:
        load.wait_acks(50, timeout=20)
        broker_cluster.stop_app(node)
        stopped = time.monotonic()
        _moved_off(broker_cluster, ha.master, node)
        load.wait_acks(50, timeout=30, since=stopped)
        until = time.monotonic()
        broker_cluster.start_app(node)
    finally:
        load.stop()
    _print_blip(f"rabbitmqctl stop_app on {node.name} (the master's node)", load, stopped, until)

    def replicated() -> bool:
        return _replicas(broker_cluster, ha, node) == whole

    wait_for(replicated, 60, "every quorum queue online on all three nodes again", every=0.5)
    _assert_no_refusal_after_recovery(load, stopped)
    _assert_nobody_promoted(ha, load)
    _assert_in_sync_with_every_ack(ha, ha.master, load)


# The master leaves the frozen node within its lease on its heartbeats' own connection
# (adapters.lease_link), and no queue of its own hears its heartbeats (entrypoints.amqp.
# heartbeats), so nobody is promoted in the runs seen since (7 of 7); a promotion would still
# pass here, for the outcome the issue fixes is one master at a time and no write lost.
def test_a_broker_node_cut_off_from_the_others_never_leaves_two_masters_or_loses_a_write(
    ha: HaCluster, broker_cluster: RabbitCluster
) -> None:
    _set_up(ha)
    node = _node_of(broker_cluster, ha.master)
    assert node is not None
    rest = broker_cluster.others(node)
    load = _load(ha)
    try:
        load.wait_acks(50, timeout=20)
        broker_cluster.pause(node)
        paused = time.monotonic()
        wait_for(
            lambda: all(node.name not in broker_cluster.running_nodes(n) for n in rest),
            60,
            f"the others to see {node.name} gone",
            every=0.5,
            tolerate=(RuntimeError,),
        )
        load.wait_acks(50, timeout=30, since=time.monotonic())  # someone takes writes again
        until = time.monotonic()
        healed = broker_cluster.resume(node)
        load.wait_acks(50, timeout=30, since=time.monotonic())
    finally:
        load.stop()
    _print_blip(f"SIGSTOP of {node.name} (the master's node)", load, paused, until)
    how = "by itself" if healed else "once its app was restarted (the partition was recorded)"
    print(f"the broker cluster was whole again {how}; promotions: {len(promotions(ha.shadow))}")
    masters = [p for p in (ha.master, ha.shadow) if health_of(p)["role"] == "master"]
    assert len(masters) == 1, [health_of(p) for p in (ha.master, ha.shadow)]
    (master,) = masters
    by_epoch: dict[int, set[str]] = {}
    for ack in load.acks:
        by_epoch.setdefault(ack.epoch, set()).add(ack.url)
    assert all(len(urls) == 1 for urls in by_epoch.values()), by_epoch
    if master is ha.shadow:
        assert_single_promotion(master)
    _assert_in_sync_with_every_ack(ha, master, load)


def test_two_watchdogs_on_different_broker_nodes_promote_once_when_one_dies_mid_failover(
    ha: HaCluster, broker_cluster: RabbitCluster, tmp_path: Path
) -> None:
    """Two watchdogs at once, each first on another broker node. The master paused (SIGSTOP:
    its direct probe then times out, which leaves the time to kill the first watchdog in the
    order after it said it probes and before it promotes): the other one promotes, exactly
    once, and nothing acknowledged is lost."""
    other = WatchdogProcess(
        env={**ha.watchdog.env, "SHADOWLINE_AMQP_URL": broker_cluster.urls(0)},
        log=tmp_path / "watchdog-b.log",
        cluster=ha.cluster,
    )
    other.watchdog_name = "watchdog-b"
    try:
        _set_up(ha)
        other.start()
        other.wait_watching()
        for watchdog, peer in ((ha.watchdog, other), (other, ha.watchdog)):
            watchdog.wait_logged(f"hears watchdog {peer.watchdog_name}", timeout=10)
        first, second = in_order(ha.cluster, ha.watchdog, other)
        offset = len(first.text())
        load = _load(ha)
        try:
            load.wait_acks(50, timeout=20)
            ha.master.signal(signal.SIGSTOP)
            paused = time.monotonic()
            first.wait_logged("probing it directly", timeout=10, after=offset)
            first.kill()
            promoted = wait_role(ha.shadow, "master", 2, timeout=20)
            time.sleep(4)  # two takeover delays: time enough for a second promotion, if any
            load.wait_acks(20, timeout=20, since=promoted)
        finally:
            load.stop()
            ha.master.signal(signal.SIGCONT)
        print(f"\ntwo watchdogs, the first killed probing -> promoted in {promoted - paused:.2f}s")
        promotion = assert_single_promotion(ha.shadow)
        assert promotion["data"]["issued_by"] == second.watchdog_name, promotion
        assert_every_ack_is_on(ha.shadow, load.acks)
        wait_role(ha.master, "shadow", 2, timeout=30)  # the paused master, resumed, rejoins
    finally:
        other.stop()


async def test_a_link_whose_first_publish_beat_the_queues_new_leader_is_confirmed_again_soon(
    broker_cluster: RabbitCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The replication queue's leader node killed and the relay's next publish made on another
    node before the queue elected its new leader: RabbitMQ 3.10 then nacked every publish on
    that channel for 30 s and more (3 of 4 CI runs of 2026-12-03). The link now publishes on a
    new channel after a nack (adapters.publish_channel), so confirms come back within seconds."""
    caplog.set_level(logging.WARNING, "shadowline.adapters.broker")
    names = Names(f"t{uuid.uuid4().hex[:10]}")
    link = BrokerLink(broker_cluster.urls(0), names, "test leader race", per_node=2)
    await link.start()
    try:
        await link.replication_queue("shadow")  # its leader on node 0, where it was declared
        await link.publish_event(chained.event(1, 1, bytes(32)), confirm_within=5)
        broker_cluster.kill(broker_cluster.nodes[0])
        killed, position, failed = time.monotonic(), 2, 0
        while True:  # publish as the relay does, as soon as the link is on another node
            try:
                await link.publish_event(chained.event(position, 1, bytes(32)), confirm_within=2)
                break
            except Exception:
                failed += 1
                assert time.monotonic() - killed < 20, f"nothing confirmed: {caplog.text[-2000:]}"
                await asyncio.sleep(0.05)
        print(f"\nfirst confirm {time.monotonic() - killed:.2f}s after the leader's node was "
              f"killed, {failed} publishes failed before it; "
              f"{caplog.text.count('publishing on a new channel')} channels replaced")  # fmt: skip
    finally:
        await link.close()
