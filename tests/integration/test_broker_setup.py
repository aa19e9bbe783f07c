"""`shadowline broker-setup --apply` creates users that can do their job and nothing more.

The users are made for two instances named `node-a` and `node_b` (a `_` and a `-`, which the
permissions' regular expressions must take literally). Each publish outside a user's rights is
tried on a channel of its own: RabbitMQ closes the channel (ACCESS_REFUSED), and a queue of
the test bound to everything shows that none of them arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused

from shadowline.adapters.broker import Names, declare_exchanges, declare_replication_queue
from shadowline.client import AsyncBrokerClient, subscribe
from tests.conftest import delete_cluster_topology, started
from tests.e2e.conftest import free_port
from tests.integration.test_broker_config_commands import by_actor, make_master

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl beside the broker"
)


INSTANCES = ("node-a", "node_b")
Applied = tuple[
    str, dict[str, str]
]  # the cluster, and each user broker-setup made with its password


@pytest.fixture(scope="module")
def applied(rabbitmq: None) -> Iterator[Applied]:
    """One cluster's users for the whole module: each `rabbitmqctl` call starts an Erlang VM
    (about a second), and every test here only reads what the users may do; each test deletes
    the topology it declared."""
    cluster = f"bs{uuid.uuid4().hex[:8]}"
    instances = [arg for name in INSTANCES for arg in ("--instance", name)]
    done = subprocess.run(
        [
            *(sys.executable, "-m", "shadowline", "broker-setup"),
            *("--cluster", cluster, *instances, "--apply"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    users = dict(line.split("\t") for line in out.strip().splitlines())
    yield cluster, users
    for user in users:
        subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, check=False)


def _url(user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:5672/"


async def test_instance_users_may_declare_the_topology_and_monitors_may_only_listen(
    applied: Applied,
) -> None:
    cluster, users = applied
    names = Names(cluster)
    assert set(users) == {
        f"shadowline-{cluster}-{r}" for r in (*INSTANCES, "watchdog", "monitor", "publisher")
    }
    master = await aio_pika.connect(_user(cluster, users, "node-a"))
    try:
        channel = await master.channel()
        await declare_exchanges(channel, names)
        # Another cluster's names are off limits even for an instance.
        with pytest.raises(ChannelAccessRefused):
            await (await master.channel()).declare_exchange(
                "shadowline.other.events", "topic", durable=True
            )
    finally:
        await master.close()

    monitor = await aio_pika.connect(
        _url(f"shadowline-{cluster}-monitor", users[f"shadowline-{cluster}-monitor"])
    )
    try:
        channel = await monitor.channel()
        queue = await channel.declare_queue(exclusive=True)  # server-named amq.gen-...
        await queue.bind(names.monitoring, "#")
        with pytest.raises(ChannelAccessRefused):
            await (await monitor.channel()).declare_queue(
                names.replication_queue("x"), durable=True
            )
        # Binding to the replicated events would let it read them: refused.
        other = await (await monitor.channel()).declare_queue(exclusive=True)
        with pytest.raises(ChannelAccessRefused):
            await other.bind(names.events, "#")
    finally:
        await monitor.close()
        await delete_cluster_topology(cluster, [])


def _user(cluster: str, users: dict[str, str], role: str) -> str:
    name = f"shadowline-{cluster}-{role}"
    return _url(name, users[name])


async def test_a_publisher_changes_config_through_the_master_and_a_monitor_hears_it(
    applied: Applied, db_url: str
) -> None:
    """Every party on its own least-privilege user: the instance declares its topology, takes
    the command and answers it on the default exchange; the publisher gets the answer by
    direct reply-to; the monitor hears the instance's heartbeats on a server-named queue."""
    cluster, users = applied
    publisher = _user(cluster, users, "publisher")
    try:
        async with started(
            db_url, cluster=cluster, instance="node-a", amqp_url=_user(cluster, users, "node-a")
        ) as inst:
            await make_master(inst)
            async with AsyncBrokerClient(publisher, cluster) as client:
                reply = await client.put(
                    "subaccount", "eu10", {"region": "eu10", "subaccount_id": "a"}
                )
            (event,) = await by_actor(inst, f"amqp:shadowline-{cluster}-publisher")
            assert (event["position"], event["metadata"]["command_id"]) == (
                reply["position"],
                reply["command_id"],
            )
            stream = subscribe(_user(cluster, users, "monitor"), cluster, ["heartbeat.*"])
            try:
                beat = await asyncio.wait_for(anext(stream), 30)
            finally:
                await stream.aclose()
            assert (beat.kind, beat.body["instance"]) == ("heartbeat", inst.settings.instance)
    finally:
        await delete_cluster_topology(cluster, [])


async def test_a_publisher_may_send_config_commands_only(applied: Applied, rabbitmq: None) -> None:
    cluster, users = applied
    names = Names(cluster)
    setup = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    connection = await aio_pika.connect(_user(cluster, users, "publisher"))
    try:
        await declare_exchanges(await setup.channel(), names)
        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(names.commands, ensure=False)
        # No master consumes here, so nothing routes it; the broker still let it through.
        await commands.publish(aio_pika.Message(b"{}"), "config.put.subaccount")
        with pytest.raises(ChannelAccessRefused):  # topic permissions: not a config command
            await commands.publish(aio_pika.Message(b"{}"), "promote.node-b")
        for forbidden in (names.events, names.monitoring):
            exchange = await (await connection.channel()).get_exchange(forbidden, ensure=False)
            with pytest.raises(ChannelAccessRefused):
                await exchange.publish(aio_pika.Message(b"{}"), "config.put.subaccount")
        with pytest.raises(ChannelAccessRefused):
            await (await connection.channel()).declare_queue(exclusive=True)
    finally:
        await connection.close()
        await setup.close()
        await delete_cluster_topology(cluster, [])


def test_a_watchdog_runs_on_its_user_and_may_send_promote_commands_only(
    applied: Applied, rabbitmq: None, tmp_path: Path
) -> None:
    cluster, users = applied
    port = free_port()
    env = {
        **os.environ,
        "SHADOWLINE_AMQP_URL": _user(cluster, users, "watchdog"),
        "SHADOWLINE_CLUSTER_SECRET": "broker-setup-test",
    }
    command = [sys.executable, "-m", "shadowline", "watchdog", "--cluster", cluster]
    with (tmp_path / "watchdog.log").open("ab") as log:
        watchdog = subprocess.Popen(
            [*command, "--http-bind", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=log
        )
    try:
        health: dict[str, Any] = {}
        deadline = time.monotonic() + 30  # it declares its exchanges and binds its queue
        while time.monotonic() < deadline and not health.get("ok"):
            time.sleep(0.2)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
        assert health.get("ok") is True, (health, (tmp_path / "watchdog.log").read_text())
        asyncio.run(_publish_as(_user(cluster, users, "watchdog"), Names(cluster)))
    finally:
        watchdog.terminate()
        watchdog.wait(timeout=30)
        asyncio.run(delete_cluster_topology(cluster, []))


async def _publish_as(url: str, names: Names) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(names.commands, ensure=False)
        await commands.publish(aio_pika.Message(b"{}"), "promote.node-b")
        with pytest.raises(ChannelAccessRefused):  # topic permissions: no config commands
            await commands.publish(aio_pika.Message(b"{}"), "config.put.subaccount")
    finally:
        await connection.close()


# -- topic permissions: who may publish which routing keys ------------------------------------


async def _published(url: str, exchange: str, routing_key: str) -> bool:
    """Publish `{}` with confirms on a channel of its own; False if the broker refused it."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(aio_pika.Message(b"{}"), routing_key, mandatory=False, timeout=10)
        return True
    except ChannelAccessRefused:
        return False
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def _everything_heard(
    names: Names,
) -> AsyncIterator[Callable[[], Awaitable[set[tuple[str, str]]]]]:
    """A guest queue bound to every routing key of the cluster's topic exchanges; yields a
    function that returns the (exchange, routing key) pairs that arrived so far."""
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    try:
        channel = await connection.channel()
        exchanges = await declare_exchanges(channel, names)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for exchange in exchanges.values():
            await queue.bind(exchange, "#")

        async def heard() -> set[tuple[str, str]]:
            # Every publish was confirmed (so queued) or refused (never queued) before this
            # marker is sent, and the queue is FIFO: once the marker is read, all has arrived.
            marker = f"marker.{uuid.uuid4().hex}"
            await exchanges["monitoring"].publish(aio_pika.Message(b"{}"), marker)
            found: set[tuple[str, str]] = set()
            async with asyncio.timeout(10), queue.iterator(no_ack=True) as messages:
                async for message in messages:
                    if message.routing_key == marker:
                        break
                    found.add((message.exchange or "", message.routing_key or ""))
            return found

        yield heard
    finally:
        await connection.close()


async def _check_publishing(
    url: str, names: Names, allowed: list[tuple[str, str]], refused: list[tuple[str, str]]
) -> None:
    async with _everything_heard(names) as heard:
        outcomes = {(e, k): await _published(url, e, k) for e, k in [*allowed, *refused]}
        assert [p for p in allowed if not outcomes[p]] == [], "refused, but the role needs it"
        assert [p for p in refused if outcomes[p]] == [], "published, but the role has no right"
        arrived = await heard()
    assert arrived == {p for p in allowed if p[0] != ""}  # the default exchange routes nothing


async def test_an_instance_user_may_publish_only_its_own_heartbeats_and_its_role_s_messages(
    applied: Applied,
) -> None:
    cluster, users = applied
    names = Names(cluster)
    monitoring, events = names.monitoring, names.events
    allowed = [
        (monitoring, "heartbeat.node-a"),
        (monitoring, "role.changed"),
        (monitoring, "alert.fenced"),
        (monitoring, "alert.rejected-command"),
        (monitoring, "config.changed"),
        (monitoring, "failover.switched"),
        (events, "config.subaccount.put"),
        (events, "config.system-mapping.deleted"),
        (events, "ha.MasterPromoted"),
        ("", "amq.rabbitmq.reply-to.g1h2AA"),  # replies to config commands (unroutable here)
    ]
    refused = [
        (monitoring, "heartbeat.node_b"),  # the other instance's heartbeats
        (monitoring, "heartbeat.node-ax"),  # regular expressions anchored ...
        (monitoring, "xheartbeat.node-a"),
        (monitoring, "heartbeat.node-a.x"),
        (monitoring, "role.changed.x"),
        (monitoring, "alert.fenced.x"),
        (monitoring, "failover.promoted"),  # the watchdog's steps
        (monitoring, "failover.promoting"),
        (events, "heartbeat.node-a"),
        (events, "config.subaccount.put.x"),
        (events, "evil"),
        (names.commands, "promote.node_b"),  # switch roles goes over HTTP
        (names.commands, "config.put.subaccount"),
        (names.dead_letter, "commands.config"),  # only RabbitMQ dead-letters
        (names.dead_letter, ""),
    ]
    try:
        await _check_publishing(_user(cluster, users, "node-a"), names, allowed, refused)
    finally:
        await delete_cluster_topology(cluster, list(INSTANCES))


async def _ignore(message: AbstractIncomingMessage) -> None:
    await message.nack()


async def test_an_instance_may_declare_its_shadow_s_queue_but_not_take_its_command_queue(
    applied: Applied,
) -> None:
    cluster, users = applied
    names = Names(cluster)
    node_a = await aio_pika.connect(_user(cluster, users, "node-a"))
    node_b = await aio_pika.connect(_user(cluster, users, "node_b"))
    try:
        await declare_exchanges(await node_a.channel(), names)
        # The master declares its shadow's replication queue, so events wait there for it.
        await declare_replication_queue(await node_a.channel(), names, "node_b")
        ours = await declare_replication_queue(await node_b.channel(), names, "node_b")
        await ours.consume(_ignore)
        await (await node_b.channel()).declare_queue(
            f"{names.commands}.node_b", exclusive=True, auto_delete=True
        )
        # An exclusive command queue taken in another's name would cut it off from promotions.
        with pytest.raises(ChannelAccessRefused):
            await (await node_a.channel()).declare_queue(
                f"{names.commands}.node_b", exclusive=True, auto_delete=True
            )
        with pytest.raises(ChannelAccessRefused):  # snooping on another's command queue
            own = await (await node_a.channel()).declare_queue(exclusive=True)
            await own.bind(names.commands, "*.node_b")
    finally:
        await node_b.close()
        await node_a.close()
        await delete_cluster_topology(cluster, list(INSTANCES))


async def test_a_watchdog_user_may_publish_failover_steps_and_promote_commands_only(
    applied: Applied,
) -> None:
    cluster, users = applied
    names = Names(cluster)
    monitoring = names.monitoring
    allowed = [
        (monitoring, "failover.probing"),
        (monitoring, "failover.promoted"),
        (monitoring, "failover.master-alive"),
        (names.commands, "promote.node_b"),
    ]
    refused = [
        (monitoring, "heartbeat.node-a"),
        (monitoring, "heartbeat.watchdog"),
        (monitoring, "role.changed"),
        (monitoring, "alert.fenced"),
        (monitoring, "config.changed"),
        (monitoring, "failover.promoted.x"),
        (names.commands, "config.put.subaccount"),
        (names.commands, "promote.node_b.x"),
        (names.events, "ha.MasterPromoted"),
        ("", f"{names.commands}.node_b"),  # straight into a command queue
    ]
    try:
        await _check_publishing(_user(cluster, users, "watchdog"), names, allowed, refused)
    finally:
        await delete_cluster_topology(cluster, list(INSTANCES))


async def test_a_monitor_user_may_publish_nothing_at_all(applied: Applied) -> None:
    cluster, users = applied
    names = Names(cluster)
    refused = [
        (names.monitoring, "heartbeat.node-a"),
        (names.monitoring, "alert.fenced"),
        (names.monitoring, "failover.promoted"),
        (names.events, "config.subaccount.put"),
        (names.commands, "promote.node_b"),
        (names.commands, "config.put.subaccount"),
        ("", names.config_commands),
    ]
    try:
        await _check_publishing(_user(cluster, users, "monitor"), names, [], refused)
    finally:
        await delete_cluster_topology(cluster, list(INSTANCES))
