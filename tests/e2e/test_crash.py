"""An instance killed with SIGKILL (or stopped with SIGTERM) under a write load loses nothing it
acknowledged: every acknowledged write is there, at its position, after a restart."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import orjson

from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import Process

WRITERS = 8


async def _write_until_stopped(
    url: str, worker: int, stop: asyncio.Event, acks: list[dict[str, Any]]
) -> None:
    async with httpx.AsyncClient(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=5) as client:
        n = 0
        while not stop.is_set():
            name = f"w{worker}-{n % 20}"
            value = {
                "virtual_host": name,
                "virtual_port": 1 + n % 65535,
                "internal_host": "10.0.0.1",
                "internal_port": 443,
                "protocol": "HTTPS",
            }
            try:
                response = await client.put(f"/config/system-mapping/{name}", json=value)
            except httpx.HTTPError:
                return  # the instance is gone: this request was never acknowledged
            if response.status_code in (200, 201):
                acks.append({**response.json(), "value": value})
            n += 1


async def _load_then(process: Process, signum: int, after_acks: int) -> list[dict[str, Any]]:
    acks: list[dict[str, Any]] = []
    stop = asyncio.Event()
    writers = [
        asyncio.create_task(_write_until_stopped(process.url, w, stop, acks))
        for w in range(WRITERS)
    ]
    while len(acks) < after_acks:  # noqa: ASYNC110 - polling a plain list the writers append to
        await asyncio.sleep(0.01)
    process.signal(signum)
    await asyncio.gather(*writers)
    return acks


def _events(url: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/events", params={"limit": 1_000_000}, auth=("admin", ADMIN_PASSWORD), timeout=30
    )
    return [orjson.loads(line) for line in response.content.splitlines()]


def _assert_every_ack_is_durable(url: str, acks: list[dict[str, Any]]) -> None:
    events = {e["position"]: e for e in _events(url)}
    assert sorted(events) == list(range(1, len(events) + 1)), "positions are not gap-free"
    for ack in acks:
        event = events.get(ack["position"])
        assert event is not None, f"acknowledged position {ack['position']} is missing"
        assert (event["kind"], event["name"], event["version"]) == (
            ack["kind"],
            ack["name"],
            ack["version"],
        )
        assert event["data"] == ack["value"]
    verify = httpx.get(f"{url}/audit/verify", auth=("admin", ADMIN_PASSWORD), timeout=30).json()
    assert verify["ok"] is True and verify["checked"] == len(events)


async def test_sigkill_under_write_load_loses_no_acknowledged_write(
    instance_process: Process,
) -> None:
    instance_process.start()
    instance_process.wait_healthy()
    acks = await _load_then(instance_process, signal.SIGKILL, after_acks=400)
    assert instance_process.wait() == -signal.SIGKILL
    instance_process.start()
    health = instance_process.wait_healthy()
    assert health["position"] >= max(a["position"] for a in acks)
    _assert_every_ack_is_durable(instance_process.url, acks)
    # The restarted instance goes on appending right after what survived.
    async with httpx.AsyncClient(
        base_url=instance_process.url, auth=("admin", ADMIN_PASSWORD)
    ) as client:
        response = await client.put(
            "/config/subaccount/after-crash", json={"region": "eu10", "subaccount_id": "x"}
        )
    assert response.json()["position"] == health["position"] + 1


async def test_sigterm_under_write_load_drains_and_exits_zero(instance_process: Process) -> None:
    instance_process.start()
    instance_process.wait_healthy()
    before = instance_process.size()
    acks = await _load_then(instance_process, signal.SIGTERM, after_acks=200)
    assert instance_process.wait() == 0
    stopping = instance_process.text(before)
    # A clean stop says so; it does not warn of a lost broker connection (issue 13).
    assert "connection to RabbitMQ node" not in stopping, stopping[-2000:]
    assert "Traceback" not in stopping, stopping[-2000:]
    instance_process.start()
    instance_process.wait_healthy()
    _assert_every_ack_is_durable(instance_process.url, acks)
