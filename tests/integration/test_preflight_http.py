"""GET /ha/preflight and the signed GET /ha/peer/about on a real instance (PostgreSQL, RabbitMQ),
and the broker check's probe of nodes that are down or say nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from shadowline import __version__
from shadowline.adapters import node_probe
from shadowline.adapters.amqp_nodes import node_of
from shadowline.adapters.migrate import head_revision
from shadowline.adapters.peer import PeerClient
from shadowline.bootstrap import Instance
from shadowline.harness import free_port
from tests.conftest import AMQP_URL, http_client

CHECKS = ["role", "shadow", "watchdog", "timing", "clocks", "version", "broker", "peer-probes"]


async def test_a_viewer_may_ask_and_a_standalone_instance_is_not_ready(
    instance: Instance, rabbitmq: None
) -> None:
    async with http_client(instance, None) as nobody:
        assert (await nobody.get("/ha/preflight")).status_code == 401
    async with http_client(instance, "vic") as viewer:
        answer = await viewer.get("/ha/preflight")
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["ok"] is False and [c["name"] for c in doc["checks"]] == CHECKS
    found = {c["name"]: c for c in doc["checks"]}
    assert not found["role"]["ok"] and "HA is not enabled" in found["role"]["detail"]
    assert found["broker"]["ok"], found["broker"]  # the shared RabbitMQ answers
    assert found["timing"]["ok"]
    assert not found["peer-probes"]["ok"] and "no peer to probe" in found["peer-probes"]["detail"]


async def test_the_about_call_answers_only_a_signed_request_and_authenticates_its_answer(
    instance: Instance,
) -> None:
    async with http_client(instance, "admin") as admin:
        unsigned = await admin.get("/ha/peer/about")
    assert unsigned.status_code == 403, unsigned.text

    settings = instance.settings
    assert settings.cluster_secret is not None
    client = PeerClient(
        "http://peer",
        settings.cluster_secret.get_secret_value(),
        "caller",
        cluster=settings.cluster,
        peer=settings.instance,
    )
    client._http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=instance.asgi), base_url="http://peer"
    )
    try:
        doc = await client.call("GET", "/ha/peer/about")
    finally:
        await client.close()
    assert doc["instance"] == settings.instance and doc["role"] == "standalone"
    assert (doc["version"], doc["revision"]) == (__version__, head_revision())
    assert doc["lease"] == settings.lease and doc["takeover_delay"] == settings.takeover_delay
    assert isinstance(doc["time"], float)


@contextlib.asynccontextmanager
async def silent_node() -> AsyncIterator[int]:
    """A port that accepts TCP and then says nothing, as a frozen broker node."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.usefixtures("rabbitmq")
async def test_the_broker_probe_names_each_node_that_is_down_or_silent() -> None:
    closed = free_port()
    async with silent_node() as silent:
        urls = ",".join(
            [
                AMQP_URL,
                f"amqp://guest:guest@127.0.0.1:{closed}/",
                f"amqp://guest:secret-password@127.0.0.1:{silent}/",
            ]
        )
        found = await node_probe.answers(urls, 0.5, "preflight test")
    assert [a.node for a in found] == [
        node_of(AMQP_URL),
        f"127.0.0.1:{closed}",
        f"127.0.0.1:{silent}",
    ]
    assert found[0].error is None
    assert found[1].error is not None and found[2].error == "no answer within 0.5 s"
    assert all("secret-password" not in (a.error or "") for a in found)


async def test_a_wrong_broker_login_is_the_nodes_error(rabbitmq: None) -> None:
    url = AMQP_URL.replace("guest:guest", "guest:not-the-password")
    if url == AMQP_URL:
        pytest.fail(f"the test broker URL has no guest:guest login to change: {AMQP_URL}")
    (answer,) = await node_probe.answers(url, 2.0, "preflight test")
    assert answer.error is not None and "not-the-password" not in answer.error
