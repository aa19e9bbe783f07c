"""The Python client's request building and answer reading, without a network: the sync and the
async HTTP client send the same requests and read answers the same way (httpx.MockTransport
stands in for an instance), and the broker client's commands and replies keep to
schemas/commands/config-*.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from shadowline.client import (
    AsyncClient,
    Client,
    ClientError,
    CommandRefused,
    ReplyTimeout,
    command,
)
from shadowline.client.broker import _applied
from shadowline.client.monitoring import _message
from tests.unit.test_message_schemas import problems, schema

Handler = Callable[[httpx.Request], httpx.Response]
WRITTEN = {"kind": "subaccount", "name": "eu10", "version": 3, "position": 12, "epoch": 1}


class Recorder:
    """An instance stand-in: records each request, answers with `answer(request)`."""

    def __init__(self, answer: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)

    def seen(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        picked = ("if-match", "x-reason", "content-type", "authorization")
        return [
            (r.method, str(r.url), {k: v for k, v in r.headers.items() if k in picked}, r.content)
            for r in self.requests
        ]


def ok(body: Any) -> Handler:
    return lambda _: httpx.Response(200, json=body)


def sync_calls(recorder: Recorder) -> None:
    with Client("http://i", "admin", "pw", transport=httpx.MockTransport(recorder)) as client:
        client.put("subaccount", "eu10", {"region": "eu10"}, if_match=2, reason="CHG-1")
        client.delete("subaccount", "eu10", if_match=3)
        client.get("subaccount", "eu10")
        client.state(at=7)
        client.state(as_of="2024-05-01T10:02:00Z")
        client.diff("3", "5")
        client.ha_enable(auto_confirm=True)


async def async_calls(recorder: Recorder) -> None:
    transport = httpx.MockTransport(recorder)
    async with AsyncClient("http://i", "admin", "pw", transport=transport) as client:
        await client.put("subaccount", "eu10", {"region": "eu10"}, if_match=2, reason="CHG-1")
        await client.delete("subaccount", "eu10", if_match=3)
        await client.get("subaccount", "eu10")
        await client.state(at=7)
        await client.state(as_of="2024-05-01T10:02:00Z")
        await client.diff("3", "5")
        await client.ha_enable(auto_confirm=True)


async def test_the_sync_and_the_async_client_send_the_same_requests() -> None:
    sync, asynchronous = Recorder(ok(WRITTEN)), Recorder(ok(WRITTEN))
    sync_calls(sync)
    await async_calls(asynchronous)
    assert sync.seen() == asynchronous.seen()
    put, delete, *_, enable = sync.seen()
    assert put[2]["if-match"] == '"2"' and put[2]["x-reason"] == "CHG-1"
    assert orjson.loads(put[3]) == {"region": "eu10"}
    assert (delete[0], delete[2]["if-match"]) == ("DELETE", '"3"')
    assert [url for _, url, _, _ in sync.seen()][3:6] == [
        "http://i/config?at=7",
        "http://i/config?as_of=2024-05-01T10%3A02%3A00Z",
        "http://i/config/diff?from=3&to=5",
    ]
    assert orjson.loads(enable[3]) == {"auto_confirm": True}


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ({"json": {"error": "expected version 2", "version": 3}}, 409, "HTTP 409: expected version 2"),
        ({"json": {"error": "invalid input", "errors": [{"path": "$.x", "message": "bad"}]}}, 422, "HTTP 422: invalid input"),
        ({"text": "<html>bad gateway</html>"}, 502, "HTTP 502: <html>bad gateway</html>"),
    ],
    ids=["json error", "validation errors", "a proxy's html"],
)  # fmt: skip
async def test_an_error_status_raises_client_error_with_the_body_in_both_clients(
    answer: dict[str, Any], status: int, message: str
) -> None:
    with pytest.raises(ClientError) as sync_error:
        sync_calls(Recorder(lambda _: httpx.Response(status, **answer)))
    with pytest.raises(ClientError) as async_error:
        await async_calls(Recorder(lambda _: httpx.Response(status, **answer)))
    for raised in (sync_error, async_error):
        assert (raised.value.status, str(raised.value)) == (status, message)
        if status == 422:
            assert raised.value.errors == [{"path": "$.x", "message": "bad"}]


def _pages(total: int, page: int) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
        lines = [
            orjson.dumps({"position": p, "type": "ConfigPut"})
            for p in range(after + 1, min(after + limit, total) + 1)
        ]
        assert limit == page
        return httpx.Response(200, content=b"\n".join(lines) + b"\n")

    return answer


async def test_history_reads_every_page_until_a_short_one_in_both_clients() -> None:
    sync, asynchronous = Recorder(_pages(2500, 1000)), Recorder(_pages(2500, 1000))
    with Client("http://i", None, None, transport=httpx.MockTransport(sync)) as client:
        seen = [e["position"] for e in client.history(actor="amqp:publisher")]
    transport = httpx.MockTransport(asynchronous)
    async with AsyncClient("http://i", None, None, transport=transport) as aclient:
        aseen = [e["position"] async for e in aclient.history(actor="amqp:publisher")]
    assert seen == aseen == list(range(1, 2501))
    assert [r.url.params["after"] for r in sync.requests] == ["0", "1000", "2000"]
    assert {r.url.params["actor"] for r in sync.requests} == {"amqp:publisher"}


def test_the_commands_the_broker_client_builds_are_valid_config_commands() -> None:
    put = command("system-mapping", "erp", {"virtual_port": 1}, expected_version=2, reason="r")
    delete = command("resource", "odata", expected_version=1)
    assert problems("commands/config-put.json", put) == []
    assert problems("commands/config-delete.json", delete) == []
    assert "value" not in delete and put["command_id"] != delete["command_id"]
    assert command("subaccount", "s", None)["value"] is None  # a null value is still a put


def test_a_refused_reply_raises_command_refused_with_the_status_http_would_give() -> None:
    for reply in schema("commands/config-reply.json")["examples"]:
        if reply["ok"]:
            assert _applied(reply) == reply
            continue
        with pytest.raises(CommandRefused) as refused:
            _applied(reply)
        assert (refused.value.status, refused.value.reply) == (reply["status"], reply)
        assert isinstance(refused.value, ClientError)


def test_a_reply_timeout_is_a_timeout_that_names_the_command_to_publish_again() -> None:
    error = ReplyTimeout("3b0c6f1e-9a2d-4c7e-8f10-2d5b7c9e1a44", 30)
    assert isinstance(error, TimeoutError)
    assert "3b0c6f1e-9a2d-4c7e-8f10-2d5b7c9e1a44" in str(error) and "same command_id" in str(error)


def test_a_monitoring_message_that_is_not_json_is_kept_readable() -> None:
    message = _message("alert.fenced", b"\xffnot json")
    assert (message.kind, message.body) == ("alert", {"raw": "\ufffdnot json"})
    beat = _message("heartbeat.node-a", json.dumps({"role": "master"}).encode())
    assert (beat.kind, beat.body) == ("heartbeat", {"role": "master"})
