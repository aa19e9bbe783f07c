"""Commands an instance will not act on raise their alerts, on the real broker: a command of an
unknown type is refused with `alert.rejected-command`, and a config command that cannot be
answered before the queue's delivery limit is dead-lettered once, with `alert.dead-lettered`,
instead of being dropped into the dead-letter queue by RabbitMQ without a word.

Each test runs an in-process master (HA enabled) in a cluster of its own; a guest connection
publishes the commands and hears the alerts on a queue bound to `alert.#`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shadowline.adapters.broker import CONFIG_DELIVERY_LIMIT, Names
from shadowline.bootstrap import Instance
from shadowline.client import command
from shadowline.domain.errors import NotWritable
from shadowline.domain.promote import PromoteCommand
from shadowline.entrypoints.amqp import config_commands
from tests.conftest import AMQP_URL
from tests.integration.test_broker_config_commands import (
    by_broker,
    cluster_of,
    guest_master,
    raw_channel,
    wait_until,
)


@pytest.fixture
async def master(db_url: str, rabbitmq: None) -> AsyncIterator[Instance]:
    async with guest_master(db_url) as inst:  # guest's config commands opted in
        yield inst


async def _alerts(queue: AbstractQueue, within: float) -> list[dict[str, Any]]:
    """Every alert that arrives on `queue` within `within` seconds."""
    found = []
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
        else:
            found.append(orjson.loads(message.body))
    return found


@pytest.mark.parametrize(
    ("verb", "body"),
    [("demote", {"type": "promote", "command_id": "c-1"}),
     ("promote", {"type": "frobnicate", "command_id": "c-2"}),
     ("promote", [1, 2, 3])],
    ids=["an unknown routing key", "an unknown type", "not an object"],
)  # fmt: skip
async def test_a_command_of_an_unknown_type_is_refused_with_an_alert_and_not_acted_on(
    master: Instance, monkeypatch: pytest.MonkeyPatch, verb: str, body: Any
) -> None:
    promoted: list[PromoteCommand] = []

    async def promote(command: PromoteCommand, via: str) -> dict[str, Any]:
        promoted.append(command)
        return {}

    assert master.failover is not None
    monkeypatch.setattr(master.failover, "promote", promote)
    routing_key = f"{verb}.{master.settings.instance}"
    async with raw_channel(cluster_of(master)) as raw:
        await raw.publish(routing_key, orjson.dumps(body))
        # A promote command goes through, so the refusal above is not the queue's doing.
        await raw.publish(f"promote.{master.settings.instance}", b'{"type": "promote"}')
        await wait_until("the promote command handed to failover", lambda: _true(promoted))
        alerts = await _alerts(raw.alerts, within=1.0)
    assert [command.doc for command in promoted] == [{"type": "promote"}]
    refused = [a for a in alerts if a["alert"] == "rejected-command"]
    assert [a["details"] for a in refused] == [{"routing_key": routing_key}], alerts
    assert "unknown command" in refused[0]["message"]


async def _true(found: list[Any]) -> bool:
    return bool(found)


async def _dead_letters(cluster: str) -> list[AbstractIncomingMessage]:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(Names(cluster).dead_letter, passive=True)
        found = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(message)
        return found
    finally:
        await connection.close()


async def _publish_failing_command(
    master: Instance, failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], list[dict[str, Any]], list[AbstractIncomingMessage]]:
    """Publish one config command whose every attempt fails with `failure`; returns the
    delivery counts it was tried with, the alerts raised and what the dead-letter queue holds."""
    tried: list[int] = []

    async def put(*_: Any) -> Any:
        tried.append(len(tried))
        raise failure

    monkeypatch.setattr(master.service, "put", put)
    monkeypatch.setattr(config_commands, "RETRY_PAUSE_MAX", 0.01)
    cluster = cluster_of(master)
    body = command("subaccount", "doomed", {"region": "eu10", "subaccount_id": "d"})
    async with raw_channel(cluster) as raw:
        await raw.publish(
            "config.put.subaccount", orjson.dumps(body), user_id="guest", message_id="doomed-1"
        )

        async def dead() -> list[AbstractIncomingMessage]:
            return await _dead_letters(cluster)

        found = await wait_until("the command in the dead-letter queue", dead, within=60)
        alerts = await _alerts(raw.alerts, within=1.5)
    return tried, alerts, found


async def test_a_config_command_that_keeps_failing_is_dead_lettered_once_with_an_alert(
    master: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried, alerts, found = await _publish_failing_command(
        master, RuntimeError("a bug"), monkeypatch
    )
    assert [m.message_id for m in found] == ["doomed-1"]
    dead = [a for a in alerts if a["alert"] == "dead-lettered"]
    assert [a["details"] for a in dead] == [
        {"message_id": "doomed-1", "routing_key": "config.put.subaccount"}
    ]
    # Dead-lettered by the master on its last delivery (one spare left for a crash), before
    # RabbitMQ would have done it silently.
    assert len(tried) == CONFIG_DELIVERY_LIMIT
    assert found[0].headers["x-first-death-reason"] == "rejected"
    assert await by_broker(master) == []


async def test_a_config_command_handed_back_on_its_last_delivery_is_dead_lettered_with_an_alert(
    master: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master hands back what it may not write now (here: the commit gate refuses every
    time while the role stays writable); each return spends a delivery."""
    refused = NotWritable("the shadow did not acknowledge this write", None)
    tried, alerts, found = await _publish_failing_command(master, refused, monkeypatch)
    assert [m.message_id for m in found] == ["doomed-1"]
    dead = [a for a in alerts if a["alert"] == "dead-lettered"]
    assert [a["details"] for a in dead] == [
        {"message_id": "doomed-1", "routing_key": "config.put.subaccount"}
    ]
    assert len(tried) == CONFIG_DELIVERY_LIMIT
