"""`shadowline broker-setup --apply` creates users that can do their job and nothing more."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from shadowline.adapters.broker import Names, declare_exchanges
from tests.conftest import delete_cluster_topology

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
        f"shadowline-{cluster}-{r}" for r in ("master", "shadow", "watchdog", "monitor")
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
