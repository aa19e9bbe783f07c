"""A BrokerLink given several broker nodes (SHADOWLINE_AMQP_URL comma-separated), against the
shared RabbitMQ: a dead first node is passed over, a lost node is left for the next one with
the link's consumers back on it, and a publish whose confirm was in flight is never taken for
confirmed. The "nodes" are TCP proxies in front of the one broker (tests/integration/tcp_proxy)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from shadowline.adapters.broker import BrokerLink, Names, heartbeat_in
from shadowline.client import subscribe
from shadowline.domain import trust
from tests.conftest import AMQP_URL, delete_cluster_topology
from tests.integration.tcp_proxy import Proxy

BROKER_PORT = int(AMQP_URL.rsplit(":", 1)[1].split("/")[0])


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


@pytest.fixture
async def cluster(rabbitmq: None) -> AsyncIterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    await delete_cluster_topology(name, [])


class Heard:
    """The heartbeats a link's consumer delivered, by routing key; waits for one."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._new = asyncio.Event()

    def __call__(self, key: str, beat: object, refusal: object) -> None:
        self.keys.append(key)
        self._new.set()

    async def wait_for(self, key: str) -> None:
        while key not in self.keys:
            self._new.clear()
            await asyncio.wait_for(self._new.wait(), 10)


async def consume_heartbeats(link: BrokerLink, heard: Heard) -> None:
    """Every heartbeat of the link's cluster, as a watchdog hears them."""
    queue = await link.heartbeat_queue()
    fresh = trust.Freshness()

    async def deliver(message: AbstractIncomingMessage) -> None:
        beat, refusal = heartbeat_in(message, link.secret, link.names.cluster, fresh)
        heard(message.routing_key or "", beat, refusal)

    await queue.consume(deliver, no_ack=True)


async def publish_until_confirmed(link: BrokerLink, key: str) -> None:
    """As the heartbeats do: a publish made while the link notices the loss fails; the next
    one, on the next node, is confirmed."""
    for _ in range(100):
        try:
            await asyncio.wait_for(link.publish_monitoring(key, {}), 1)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never confirmed")


async def publish_until_heard(link: BrokerLink, heard: Heard, key: str) -> None:
    """Publish until the link's own consumer hears it: until that consumer is restored on the
    next node a confirmed publish may find no queue bound (monitoring is not mandatory)."""
    for _ in range(150):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(link.publish_monitoring(key, {}), 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait_for(key), 0.2)
            return
    raise AssertionError(f"{key} never heard")


async def logged(caplog: pytest.LogCaptureFixture, line: str) -> None:
    for _ in range(100):
        if line in caplog.text:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never logged: {line}")


async def test_a_link_passes_over_a_dead_first_node_and_says_which_node_it_is_on(
    cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "shadowline.adapters.broker")
    dead = dead_url()
    link = BrokerLink(f"{dead},{AMQP_URL}", Names(cluster), "test nodes", per_node=2)
    await link.start()
    try:
        assert link.node == f"127.0.0.1:{BROKER_PORT}"
        heard = Heard()
        await consume_heartbeats(link, heard)
        await link.publish_monitoring("heartbeat.one", {"instance": "one"})
        await heard.wait_for("heartbeat.one")
    finally:
        await link.close()
    assert "did not answer" in caplog.text
    assert f"connected to RabbitMQ node 127.0.0.1:{BROKER_PORT}" in caplog.text
    assert "guest:guest" not in caplog.text


async def test_a_link_moves_to_the_next_node_when_its_node_is_lost_and_consumes_there_again(
    cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "shadowline.adapters.broker")
    first, second = await Proxy(BROKER_PORT).start(), await Proxy(BROKER_PORT).start()
    link = BrokerLink(f"{first.url()},{second.url()}", Names(cluster), "test nodes", per_node=2)
    await link.start()
    try:
        assert link.node == f"127.0.0.1:{first.port}"
        heard = Heard()
        await consume_heartbeats(link, heard)
        await link.publish_monitoring("heartbeat.before", {})
        await heard.wait_for("heartbeat.before")
        await first.cut()
        # The heartbeat consumer's exclusive queue went with the connection: the robust
        # connection declares, binds and consumes it again on the second node.
        await publish_until_heard(link, heard, "heartbeat.after")
        assert link.node == f"127.0.0.1:{second.port}"
        # The reconnect callback runs after the consumers are restored: wait for its line.
        await logged(caplog, f"reconnected to RabbitMQ node 127.0.0.1:{second.port}")
    finally:
        await link.close()
        await second.cut()
    assert f"connection to RabbitMQ node 127.0.0.1:{first.port} lost" in caplog.text


async def test_a_node_that_accepts_and_says_nothing_is_given_up_for_the_next(
    cluster: str,
) -> None:
    mute = await Proxy(BROKER_PORT, mute=True).start()
    link = BrokerLink(f"{mute.url()},{AMQP_URL}", Names(cluster), "test nodes", per_node=0.5)
    try:
        await link.start()
        assert link.node == f"127.0.0.1:{BROKER_PORT}"
    finally:
        await link.close()
        await mute.cut()


async def test_a_publish_whose_confirm_was_in_flight_when_the_node_was_lost_is_not_confirmed(
    cluster: str,
) -> None:
    first, second = await Proxy(BROKER_PORT).start(), await Proxy(BROKER_PORT).start()
    link = BrokerLink(f"{first.url()},{second.url()}", Names(cluster), "test nodes", per_node=2)
    await link.start()
    try:
        first.hold_replies()  # the broker's confirm never reaches the link
        publish = asyncio.create_task(link.publish_monitoring("heartbeat.lost", {}))
        await first.sending()  # the message went out; its confirm is held
        await first.cut()
        with pytest.raises(Exception):  # noqa: B017  # any error: what matters is no success
            await publish
        await publish_until_confirmed(link, "heartbeat.next")  # on the second node
        assert link.node == f"127.0.0.1:{second.port}"
    finally:
        await link.close()
        await second.cut()


async def test_the_monitoring_client_subscribes_through_the_first_node_that_answers(
    cluster: str,
) -> None:
    link = BrokerLink(AMQP_URL, Names(cluster), "test nodes publisher")
    await link.start()
    stream = subscribe(f"{dead_url()},{AMQP_URL}", cluster, ["alert.*"], wait_for_cluster=10)
    try:
        receiving = asyncio.ensure_future(anext(stream))
        while not receiving.done():  # the client's queue is bound once the publish routes
            await link.publish_monitoring("alert.test", {"n": 1})
            await asyncio.wait([receiving], timeout=0.2)
        message = receiving.result()
        assert (message.routing_key, message.body) == ("alert.test", {"n": 1})
    finally:
        await stream.aclose()
        await link.close()


class Inbox:
    """What one queue's consumer got, by body; waits for one."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._new = asyncio.Event()

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.bodies.append(message.body)
            self._new.set()

    async def wait_for(self, body: bytes) -> None:
        while body not in self.bodies:
            self._new.clear()
            await asyncio.wait_for(self._new.wait(), 10)


async def test_the_replication_command_and_config_command_consumers_come_back_on_the_next_node(
    cluster: str,
) -> None:
    first, second = await Proxy(BROKER_PORT).start(), await Proxy(BROKER_PORT).start()
    names = Names(cluster)
    link = BrokerLink(f"{first.url()},{second.url()}", names, "test nodes", per_node=2)
    await link.start()
    inboxes = {"replication": Inbox(), "commands": Inbox(), "config": Inbox()}
    try:
        await (await link.replication_queue("shadow")).consume(inboxes["replication"])
        await (await link.command_queue("master")).consume(inboxes["commands"])
        _, config = await link.config_command_queue(prefetch=1)
        await config.consume(inboxes["config"])
        for round_ in (b"before", b"after"):
            for _ in range(100):  # as the relay and the publishers do: again until routed
                try:
                    await send_to_each(link, names, round_)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{round_!r} never confirmed")
            for inbox in inboxes.values():
                await inbox.wait_for(round_)
            if round_ == b"before":
                await first.cut()
        assert link.node == f"127.0.0.1:{second.port}"
    finally:
        await link.close()
        await second.cut()
        await delete_cluster_topology(cluster, ["shadow"])


async def send_to_each(link: BrokerLink, names: Names, body: bytes) -> None:
    """One message to the replication queue, the instance's command queue and the config
    command queue, each confirmed and routed (mandatory)."""
    exchanges = link.exchanges
    for exchange, key in (
        (exchanges["events"], "config.resource.put"),
        (exchanges["commands"], "promote.master"),
        (exchanges["commands"], "config.put.resource"),
    ):
        await asyncio.wait_for(
            exchange.publish(aio_pika.Message(body), key, mandatory=True, timeout=1), 2
        )
