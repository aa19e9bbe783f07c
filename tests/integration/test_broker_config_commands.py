"""Config changes published on the broker: applied by the master through the same path as PUT
and DELETE, answered by direct reply-to, never applied twice, refused like HTTP refuses, and
kept in the queue while no master consumes them.

Each test runs an in-process instance (tests/conftest.py) made master by POST /ha/enable, on
the real PostgreSQL and RabbitMQ, in a cluster of its own whose broker names are deleted after.
The tests publish as guest, which a master never allows by default: their masters opt in with
SHADOWLINE_COMMAND_PUBLISHERS=guest, as `shadowline demo` does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shadowline.adapters.broker import Names, declare_exchanges
from shadowline.bootstrap import Instance
from shadowline.client import (
    AsyncBrokerClient,
    AsyncClient,
    BrokerClient,
    CommandRefused,
    command,
)
from shadowline.settings import broker_user
from tests.conftest import AMQP_URL, PASSWORDS, delete_cluster_topology, started

REPLY_TO = "amq.rabbitmq.reply-to"
GUEST_MAY_PUBLISH = {"command_publishers": "guest"}  # the explicit opt-in
MAPPING = {
    "virtual_host": "erp.virtual",
    "virtual_port": 443,
    "internal_host": "10.1.2.3",
    "internal_port": 44300,
    "protocol": "HTTPS",
}


def http(inst: Instance) -> AsyncClient:
    import httpx

    transport = httpx.ASGITransport(app=inst.asgi)
    return AsyncClient("http://instance", "admin", PASSWORDS["admin"], transport=transport)


async def wait_until(what: str, check: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within}s")


async def consumers(cluster: str) -> int:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(Names(cluster).config_commands, passive=True)
        assert queue.declaration_result.consumer_count is not None
        return queue.declaration_result.consumer_count
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        await connection.close()


async def make_master(inst: Instance) -> None:
    async with http(inst) as client:
        await client.ha_enable()
    await wait_until("the master consuming config commands", lambda: consumers(cluster_of(inst)))


def cluster_of(inst: Instance) -> str:
    return inst.settings.cluster


@asynccontextmanager
async def guest_master(db_url: str) -> AsyncIterator[Instance]:
    """A master that takes config commands from guest (opted in), in a cluster of its own."""
    async with started(db_url, **GUEST_MAY_PUBLISH) as inst:
        try:
            await make_master(inst)
            yield inst
        finally:
            await delete_cluster_topology(cluster_of(inst), [])


@pytest.fixture
async def master(db_url: str, rabbitmq: None) -> AsyncIterator[Instance]:
    async with guest_master(db_url) as inst:
        yield inst


@pytest.fixture
async def broker(master: Instance) -> AsyncIterator[AsyncBrokerClient]:
    async with AsyncBrokerClient(AMQP_URL, cluster_of(master), timeout=30) as client:
        yield client


async def by_actor(inst: Instance, actor: str) -> list[dict[str, Any]]:
    async with http(inst) as client:
        return [e async for e in client.history(actor=actor)]


async def by_broker(inst: Instance) -> list[dict[str, Any]]:
    """The events written from broker commands of the test's AMQP user (guest)."""
    return await by_actor(inst, "amqp:guest")


async def test_a_put_and_a_delete_published_on_the_broker_are_applied_and_answered(
    master: Instance, broker: AsyncBrokerClient
) -> None:
    put = await broker.put("system-mapping", "erp-prod", MAPPING, reason="CHG-1")
    assert (put["ok"], put["kind"], put["name"], put["version"]) == (
        True,
        "system-mapping",
        "erp-prod",
        1,
    )
    async with http(master) as client:
        assert await client.get("system-mapping", "erp-prod") == {"value": MAPPING, "version": 1}
        assert (await client.health())["position"] == put["position"]
    deleted = await broker.delete("system-mapping", "erp-prod", expected_version=1)
    assert (deleted["version"], deleted["position"]) == (2, put["position"] + 1)
    (first, second) = await by_broker(master)
    assert first["metadata"] == {
        "actor": "amqp:guest",
        "request_id": put["command_id"],
        "command_id": put["command_id"],
        "reason": "CHG-1",
    }
    assert (second["type"], second["metadata"]["command_id"]) == (
        "ConfigDeleted",
        deleted["command_id"],
    )


async def test_a_wrong_expected_version_is_answered_409_and_changes_nothing(
    master: Instance, broker: AsyncBrokerClient
) -> None:
    await broker.put("subaccount", "eu10", {"region": "eu10", "subaccount_id": "a1"})
    with pytest.raises(CommandRefused) as refused:
        await broker.put(
            "subaccount", "eu10", {"region": "eu10", "subaccount_id": "a2"}, expected_version=7
        )
    assert refused.value.status == 409
    assert (refused.value.reply["expected"], refused.value.reply["version"]) == (7, 1)
    assert len(await by_broker(master)) == 1


async def test_a_repeated_command_id_is_answered_with_the_first_outcome_and_applied_once(
    master: Instance, broker: AsyncBrokerClient
) -> None:
    body = command("subaccount", "eu10", {"region": "eu10", "subaccount_id": "a1"})
    first = await broker.publish_config_change("put", body)
    again = await broker.publish_config_change("put", body)
    assert again == {**first, "duplicate": True}
    other = command("subaccount", "eu10", command_id=body["command_id"])
    reused = await broker.publish_config_change("delete", other)
    assert (reused["ok"], reused.get("status")) == (False, 409), reused
    assert len(await by_broker(master)) == 1


# -- raw messages: what a careless or hostile publisher may send -------------------------------


@dataclass
class Raw:
    """An outsider publishing raw commands; hears replies (direct reply-to) and alerts."""

    cluster: str
    channel: AbstractChannel
    alerts: AbstractQueue
    replies: asyncio.Queue[AbstractIncomingMessage]

    async def publish(
        self, routing_key: str, body: bytes, **properties: Any
    ) -> AbstractIncomingMessage | None:
        """Publish as given; the reply if `reply` (then reply_to is direct reply-to)."""
        exchange = await self.channel.get_exchange(Names(self.cluster).commands, ensure=False)
        message = aio_pika.Message(body, **properties)
        await exchange.publish(message, routing_key, mandatory=True)
        if not properties.get("reply_to"):
            return None
        return await asyncio.wait_for(self.replies.get(), 30)


@asynccontextmanager
async def raw_channel(cluster: str) -> AsyncIterator[Raw]:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchanges = await declare_exchanges(channel, Names(cluster))
        alerts = await channel.declare_queue(exclusive=True, auto_delete=True)
        await alerts.bind(exchanges["monitoring"], "alert.*")
        replies: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        inbox = await channel.get_queue(REPLY_TO, ensure=False)
        await inbox.consume(replies.put, no_ack=True)
        yield Raw(cluster, channel, alerts, replies)
    finally:
        await connection.close()


async def heard(alerts: AbstractQueue, name: str, within: float = 15) -> dict[str, Any]:
    async def one() -> dict[str, Any] | None:
        message = await alerts.get(no_ack=True, fail=False)
        doc = orjson.loads(message.body) if message else None
        return doc if doc and doc["alert"] == name else None

    found: dict[str, Any] = await wait_until(f"alert.{name}", one, within)
    return found


@pytest.mark.parametrize(
    ("routing_key", "body", "path"),
    [
        ("config.put.system-mapping", {"name": "m", "value": {**MAPPING, "virtual_port": 70000}}, "$.virtual_port"),
        ("config.put.printer", {"name": "p", "value": {}}, "kind"),
        ("config.put.log-level", {"name": "root", "value": {"level": "DEBUG"}}, "$.kind"),
        ("config.put.resource", {"kind": "subaccount", "name": "s", "value": {}}, "$.kind"),
        ("config.delete.subaccount", {"name": "s", "value": 1}, "$"),
        ("config.put.subaccount", {"name": "Not A Name", "value": {}}, "$.name"),
    ],
    ids=["schema violation", "unknown kind", "local-only kind", "kind not the routed one",
         "a delete with a value", "bad name"],
)  # fmt: skip
async def test_an_invalid_command_is_answered_422_with_the_path_like_put_and_applies_nothing(
    master: Instance, routing_key: str, body: dict[str, Any], path: str
) -> None:
    cluster, kind = cluster_of(master), routing_key.split(".")[2]
    doc = {**command(kind, "x"), **body}
    async with raw_channel(cluster) as raw:
        message = await raw.publish(
            routing_key, orjson.dumps(doc), user_id="guest",
            reply_to=REPLY_TO,
        )  # fmt: skip
    assert message is not None
    reply = orjson.loads(message.body)
    assert (reply["ok"], reply.get("status")) == (False, 422), reply
    assert path in [e["path"] for e in reply.get("errors", [])], reply
    assert await by_broker(master) == []


async def test_malformed_json_is_answered_400_and_a_command_without_user_id_403_with_an_alert(
    master: Instance,
) -> None:
    cluster = cluster_of(master)
    async with raw_channel(cluster) as raw:
        reply = await raw.publish(
            "config.put.subaccount", b"{not json",
            reply_to=REPLY_TO, correlation_id="c-1", user_id="guest",
        )  # fmt: skip
        assert reply is not None and reply.correlation_id == "c-1"
        doc = orjson.loads(reply.body)
        assert (doc["ok"], doc["status"], doc["command_id"]) == (False, 400, None)
        anonymous = command("subaccount", "s1", {"region": "eu10", "subaccount_id": "a"})
        reply = await raw.publish(
            "config.put.subaccount", orjson.dumps(anonymous),
            reply_to=REPLY_TO, correlation_id="c-2",
        )  # fmt: skip
        assert reply is not None
        assert orjson.loads(reply.body)["status"] == 403
        alert = await heard(raw.alerts, "rejected-command")
        assert alert["details"]["command_id"] == anonymous["command_id"]
    assert await by_broker(master) == []


async def test_a_refused_command_nobody_waits_for_is_dead_lettered_with_an_alert(
    master: Instance,
) -> None:
    cluster = cluster_of(master)
    async with raw_channel(cluster) as raw:
        await raw.publish(
            "config.put.subaccount", b"\xff poison", user_id="guest",
            message_id="poison-1",
        )  # fmt: skip
        alert = await heard(raw.alerts, "dead-lettered")
        assert alert["details"] == {
            "message_id": "poison-1",
            "routing_key": "config.put.subaccount",
        }
        dead = await raw.channel.declare_queue(Names(cluster).dead_letter, passive=True)
        message = await wait_until("the dead-lettered command", lambda: dead.get(fail=False))
        assert message.body == b"\xff poison"


async def test_a_valid_command_without_reply_to_is_applied(master: Instance) -> None:
    cluster = cluster_of(master)
    body = command("subaccount", "quiet", {"region": "eu10", "subaccount_id": "q"})
    async with raw_channel(cluster) as raw:
        await raw.publish("config.put.subaccount", orjson.dumps(body), user_id="guest")

    async def applied() -> bool:
        return len(await by_broker(master)) == 1

    await wait_until("the change without reply_to applied", applied)


# -- no master: the command waits --------------------------------------------------------------


async def test_a_command_published_while_the_master_is_down_is_answered_when_it_is_back(
    db_url: str, rabbitmq: None
) -> None:
    settings = {
        "instance": "cmd-master",
        "cluster": f"t{uuid.uuid4().hex[:10]}",
        **GUEST_MAY_PUBLISH,
    }
    try:
        async with started(db_url, **settings) as inst:
            await make_master(inst)
        assert await consumers(settings["cluster"]) == 0
        async with AsyncBrokerClient(AMQP_URL, settings["cluster"], timeout=60) as client:
            waiting = asyncio.create_task(
                client.put("subaccount", "late", {"region": "eu10", "subaccount_id": "l"})
            )
            await asyncio.sleep(0.5)
            assert not waiting.done(), "answered with no master running"
            async with started(db_url, **settings) as inst:
                reply = await waiting
                async with http(inst) as http_client:
                    item = await http_client.get("subaccount", "late")
        assert (reply["version"], item["version"]) == (1, 1)
    finally:
        await delete_cluster_topology(settings["cluster"], [])


async def test_the_sync_broker_client_puts_and_deletes(master: Instance) -> None:
    def script() -> tuple[int, int]:
        with BrokerClient(AMQP_URL, cluster_of(master), timeout=30) as client:
            put = client.put(
                "resource", "odata", {"system_mapping": "m", "path": "/sap", "match": "prefix"}
            )
            deleted = client.delete("resource", "odata", expected_version=put["version"])
            return put["version"], deleted["version"]

    assert await asyncio.to_thread(script) == (1, 2)


async def test_a_broker_user_not_named_in_command_publishers_is_refused_403(
    db_url: str, rabbitmq: None
) -> None:
    # guest may write to the exchange, but this master accepts commands from one user only.
    cluster = f"t{uuid.uuid4().hex[:10]}"
    try:
        async with started(db_url, cluster=cluster, command_publishers="ops-robot") as inst:
            await make_master(inst)
            async with AsyncBrokerClient(AMQP_URL, cluster, timeout=30) as client:
                with pytest.raises(CommandRefused) as refused:
                    await client.put("subaccount", "s1", {"region": "eu10", "subaccount_id": "a"})
            assert refused.value.status == 403
            assert "'guest' may not publish config commands" in refused.value.reply["error"]
            assert await by_broker(inst) == []
    finally:
        await delete_cluster_topology(cluster, [])


async def test_a_master_on_default_settings_refuses_a_command_from_guest_403_with_an_alert(
    db_url: str, rabbitmq: None
) -> None:
    """guest is RabbitMQ's default login and SHADOWLINE_AMQP_URL's default user: being the
    instance's own broker user does not make it a publisher."""
    async with started(db_url) as inst:
        assert inst.settings.command_publishers == ""
        assert broker_user(inst.settings.amqp_url.get_secret_value()) == "guest"
        assert "guest" not in inst.settings.publishers
        try:
            await make_master(inst)
            async with http(inst) as client:
                before = (await client.health())["position"]
            body = command("subaccount", "s1", {"region": "eu10", "subaccount_id": "a"})
            async with raw_channel(cluster_of(inst)) as raw:
                reply = await raw.publish(
                    "config.put.subaccount", orjson.dumps(body), user_id="guest",
                    reply_to=REPLY_TO,
                )  # fmt: skip
                assert reply is not None
                doc = orjson.loads(reply.body)
                assert (doc["ok"], doc.get("status"), doc["command_id"]) == (
                    False, 403, body["command_id"],
                ), doc  # fmt: skip
                assert "'guest' may not publish config commands" in doc["error"]
                alert = await heard(raw.alerts, "rejected-command")
                assert alert["details"]["command_id"] == body["command_id"]
            async with http(inst) as client:
                assert (await client.health())["position"] == before
                assert (await client.state())["items"] == {}
            assert await by_broker(inst) == []
        finally:
            await delete_cluster_topology(cluster_of(inst), [])


async def test_guest_named_in_command_publishers_may_change_config(
    db_url: str, rabbitmq: None
) -> None:
    async with guest_master(db_url) as inst:
        assert "guest" in inst.settings.publishers
        async with AsyncBrokerClient(AMQP_URL, cluster_of(inst), timeout=30) as client:
            reply = await client.put("subaccount", "s1", {"region": "eu10", "subaccount_id": "a"})
        assert (reply["ok"], reply["version"]) == (True, 1)
        async with http(inst) as http_client:
            assert (await http_client.get("subaccount", "s1"))["version"] == 1
        assert [e["name"] for e in await by_broker(inst)] == ["s1"]


async def test_one_command_id_published_twice_at_once_gets_two_answers_and_one_change(
    master: Instance, broker: AsyncBrokerClient
) -> None:
    same = str(uuid.uuid4())
    value = {"region": "eu10", "subaccount_id": "twice"}
    first, second = await asyncio.gather(
        broker.put("subaccount", "twice", value, command_id=same),
        broker.put("subaccount", "twice", value, command_id=same),
    )
    assert (first["position"], first["version"]) == (second["position"], second["version"])
    assert sorted(bool(r.get("duplicate")) for r in (first, second)) == [False, True]
    assert [e["name"] for e in await by_broker(master)] == ["twice"]
