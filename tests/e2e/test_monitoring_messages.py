"""What an external monitor bound to a cluster's monitoring exchange receives during a real
failover, checked against schemas/asyncapi.yaml and the JSON Schemas it references.

A master, its shadow and a watchdog run as real processes (heartbeat 0.5 s, takeover delay 2 s).
A queue is bound with `#` before anything starts; then come writes, a kill -9 of the master,
the promotion of the shadow, a write on the new master, the return of the old master as its
shadow, and that shadow paused under a write so that the new master degrades to async. Every
message received must match the schema of its routing key, and the last role.changed of each
instance must say the role it really has.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from tests.conftest import AMQP_URL
from tests.e2e.conftest import Pair, Process
from tests.unit.test_message_schemas import check_message

pytestmark = pytest.mark.e2e

HA_ENV = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}


@dataclass(frozen=True)
class Received:
    routing_key: str
    body: bytes
    content_type: str | None
    delivery_mode: int | None
    expiration: str | None


@dataclass
class Monitor:
    """An exclusive queue bound with `#` to the monitoring exchange, consumed in a thread of its
    own (heartbeats expire within 1.5 s, so they must be read as they come)."""

    exchange: str
    received: list[Received] = field(default_factory=list)
    _bound: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._bound.wait(15), f"could not bind a queue to {self.exchange}: {self._error}"
        return self

    def stop(self) -> list[Received]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        return list(self.received)

    def _main(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as error:
            self._error = error

    async def _consume(self) -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        try:
            channel = await connection.channel()
            # Declared as every shadowline service declares it (idempotent), so the queue can
            # be bound before any of them has started.
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, "#")
            await queue.consume(self._on_message, no_ack=True)
            self._bound.set()
            await asyncio.to_thread(self._stop.wait)
        finally:
            await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.received.append(
            Received(
                str(message.routing_key),
                message.body,
                message.content_type,
                int(message.delivery_mode) if message.delivery_mode is not None else None,
                message.properties.expiration,
            )
        )


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _health(process: Process) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{process.url}/health", timeout=0.5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _is(process: Process, role: str, epoch: int) -> bool:
    found = _health(process)
    return found is not None and (found["role"], found["epoch"]) == (role, epoch)


@pytest.fixture
def watchdog(pair: Pair, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`shadowline watchdog` for the pair's cluster, stopped by its PID afterwards."""
    env = {
        **os.environ,
        **HA_ENV,
        "SHADOWLINE_CLUSTER": pair.cluster,
        "SHADOWLINE_CLUSTER_SECRET": "e2e-secret",
        "SHADOWLINE_AMQP_URL": AMQP_URL,
    }
    command = [sys.executable, "-m", "shadowline", "watchdog", "--cluster", pair.cluster]
    with (tmp_path / "watchdog.log").open("ab") as log:
        process = subprocess.Popen(
            [*command, "--name", "watchdog-e2e"], env=env, stdout=log, stderr=log
        )
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _mapping(n: int) -> dict[str, Any]:
    return {
        "virtual_host": f"v{n}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1 + n,
        "protocol": "HTTPS",
    }


def _fail_over(pair: Pair) -> None:
    """Writes, kill -9 of the master, a write on the new one, the old one back as its shadow,
    then that shadow paused under a write so that the new master degrades to async."""
    pair.set_up()
    with pair.admin(pair.master) as master:
        for n in range(5):
            assert master.put(f"/config/system-mapping/m{n}", json=_mapping(n)).status_code == 201
        assert master.delete("/config/system-mapping/m0").status_code == 200
        _wait(lambda: master.get("/ha").json().get("replication") == "sync", 20, "sync mode")
    pair.master.signal(signal.SIGKILL)
    pair.master.wait()
    _wait(lambda: _is(pair.shadow, "master", 2), 15, "the shadow to be master in epoch 2")
    with pair.admin(pair.shadow) as new_master:
        assert new_master.put("/config/system-mapping/m9", json=_mapping(9)).status_code == 201
        pair.master.start()
        _wait(lambda: _is(pair.master, "shadow", 2), 20, "the old master to rejoin as shadow")
        _wait(lambda: new_master.get("/ha").json().get("replication") == "sync", 20, "sync mode")
        pair.master.signal(signal.SIGSTOP)
        try:  # acknowledged after the sync timeout (1 s), in async mode: alert.sync-degraded
            assert new_master.put("/config/system-mapping/m1", json=_mapping(10)).status_code == 200
        finally:
            pair.master.signal(signal.SIGCONT)
    time.sleep(1.0)  # a few more heartbeats of the new roles


def _last_role_changes(messages: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for key, body in messages:
        if key == "role.changed":
            last[body["instance"]] = body
    return last


def test_every_monitoring_message_of_a_failover_matches_its_documented_schema(
    pair: Pair, watchdog: subprocess.Popen[bytes]
) -> None:
    for process in (pair.master, pair.shadow):
        process.env.update(HA_ENV)
    exchange = f"shadowline.{pair.cluster}.monitoring"
    monitor = Monitor(exchange).start()
    try:
        _fail_over(pair)
    finally:
        received = monitor.stop()
    messages = [(m.routing_key, orjson.loads(m.body)) for m in received]
    problems = [
        f"{key}: {problem} in {body}"
        for key, body in messages
        for problem in check_message(exchange, key, body)
    ]
    for m in received:
        expiration = "1500" if m.routing_key.startswith("heartbeat.") else None  # 3 x 0.5 s
        if (m.content_type, m.delivery_mode, m.expiration) != ("application/json", 1, expiration):
            problems.append(
                f"{m.routing_key}: content type {m.content_type}, delivery mode "
                f"{m.delivery_mode}, expiration {m.expiration}; documented: application/json, "
                f"1 (transient), {expiration}"
            )
    keys = {key for key, _ in messages}
    expected = {"heartbeat.master", "heartbeat.shadow", "config.changed", "role.changed"}
    expected |= {"failover.probing", "failover.promoting", "failover.promoted"}
    expected |= {"alert.sync-degraded"}
    problems += [f"no {key} among {sorted(keys)}" for key in sorted(expected - keys)]
    for instance, process in (("master", pair.master), ("shadow", pair.shadow)):
        health = _health(process)
        last = _last_role_changes(messages).get(instance)
        if health and last and (last["role"], last["epoch"]) != (health["role"], health["epoch"]):
            problems.append(
                f"the last role.changed of {instance} says {last['role']} in epoch "
                f"{last['epoch']} ({last['sentence']!r}), but it is {health['role']} in epoch "
                f"{health['epoch']}"
            )
    assert problems == [], "\n".join(problems)
