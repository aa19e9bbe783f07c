"""`shadowline broker-setup --apply` creates users that can do their job and nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ChannelAccessRefused

from shadowline.adapters.broker import Names, declare_exchanges
from shadowline.client import AsyncBrokerClient, subscribe
from tests.conftest import delete_cluster_topology, started
from tests.e2e.conftest import free_port
from tests.integration.test_broker_config_commands import by_actor, make_master

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl beside the broker"
)


@pytest.fixture
def applied(rabbitmq):
    cluster = f"bs{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-m", "shadowline", "broker-setup", "--cluster", cluster, "--apply"],
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


async def test_instance_users_may_declare_the_topology_and_monitors_may_only_listen(applied):
    cluster, users = applied
    names = Names(cluster)
    assert set(users) == {
        f"shadowline-{cluster}-{r}"
        for r in ("master", "shadow", "watchdog", "monitor", "publisher")
    }
    master = await aio_pika.connect(
        _url(f"shadowline-{cluster}-master", users[f"shadowline-{cluster}-master"])
    )
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
    applied, db_url: str
):
    """Every party on its own least-privilege user: the instance declares its topology, takes
    the command and answers it on the default exchange; the publisher gets the answer by
    direct reply-to; the monitor hears the instance's heartbeats on a server-named queue."""
    cluster, users = applied
    publisher = _user(cluster, users, "publisher")
    try:
        async with started(
            db_url, cluster=cluster, amqp_url=_user(cluster, users, "master")
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


async def test_a_publisher_may_send_config_commands_only(applied, rabbitmq):
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
    applied, rabbitmq, tmp_path
):
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
        health: dict = {}
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
