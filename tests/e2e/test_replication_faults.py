"""Shadow replication under faults: duplicated, reordered, missing and poison messages on the
broker, a deleted replication queue, and a shadow or a master killed under write load.

Every test ends with the same verdict (`assert_converged`): the shadow reaches the master's
position, `GET /ha/verify` agrees, both histories are byte-identical and gap-free (positions
1..N, nothing applied twice), and the shadow process is still the one we started (no crash loop,
no task restarting on an unexpected error).
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import httpx
import orjson
from aio_pika.abc import AbstractChannel

from shadowline.adapters.broker import Names, message_for
from shadowline.domain import trust
from shadowline.domain.events import Event, from_envelope, link
from tests.conftest import ADMIN_PASSWORD, AMQP_URL
from tests.e2e.conftest import Pair, Process

SECRET = "e2e-secret"  # the cluster secret tests.e2e.conftest.make_process gives every instance

T = TypeVar("T")

# -- polling and reading ---------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], timeout: float = 20, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _mapping(n: int) -> dict[str, Any]:
    return {
        "virtual_host": f"v{n}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1 + n % 65000,
        "protocol": "HTTPS",
    }


def _client(process: Process) -> httpx.Client:
    return httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD), timeout=10)


def _position(process: Process) -> int | None:
    """The instance's head, or None while it is down or starting."""
    try:
        response = httpx.get(f"{process.url}/health", timeout=2)
    except httpx.HTTPError:
        return None
    return int(response.json()["position"]) if response.status_code == 200 else None


def _history(process: Process) -> bytes:
    with _client(process) as client:
        response = client.get("/events", params={"limit": 1_000_000}, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def _envelopes(process: Process) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in _history(process).splitlines()]


def write_mappings(process: Process, count: int, prefix: str = "m") -> None:
    with _client(process) as client:
        for n in range(count):
            response = client.put(f"/config/system-mapping/{prefix}{n}", json=_mapping(n))
            assert response.status_code in (200, 201), response.text


def _metric(process: Process, sample: str) -> float:
    with _client(process) as client:
        text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _dead_lettered_alerts(process: Process) -> float:
    return _metric(process, 'shadowline_alerts_total{name="dead-lettered"}')


# -- the verdict -----------------------------------------------------------------------------


def assert_no_crash_loop(process: Process, starts: int) -> None:
    """Still running, started exactly `starts` times, and no task restarted on a surprise."""
    assert process.popen is not None and process.popen.poll() is None, "the process exited"
    log = process.log.read_text()
    name = process.env["SHADOWLINE_INSTANCE"]
    started = log.count(f"shadowline.instance: instance {name} is ")
    assert started == starts, f"{name} started {started} times, expected {starts}:\n{log[-3000:]}"
    surprises = [line for line in log.splitlines() if "failed unexpectedly" in line]
    assert not surprises, "a task restarted after an unexpected error:\n" + "\n".join(surprises)


def assert_converged(pair: Pair, *, shadow_starts: int = 1, timeout: float = 20) -> int:
    """The shadow holds exactly the master's history; returns the common head."""
    head = _position(pair.master)
    assert head is not None, "the master is not healthy"
    wait_until(lambda: _position(pair.shadow) == head, timeout, f"the shadow to reach {head}")
    with _client(pair.shadow) as shadow:
        verify = shadow.get("/ha/verify").json()
    assert verify["agree"], verify["sentence"]
    master_history = _history(pair.master)
    wait_until(
        lambda: _history(pair.shadow) == master_history, timeout, "identical histories"
    )  # the history below the bootstrap image is backfilled in the background
    positions = [orjson.loads(line)["position"] for line in master_history.splitlines()]
    assert positions == list(range(1, head + 1)), "positions are not exactly 1..N"
    assert_no_crash_loop(pair.shadow, shadow_starts)
    return head


def assert_each_event_applied_once(pair: Pair, head: int) -> None:
    """The shadow (started once) applied each event after its bootstrap image exactly once."""
    found = re.search(
        r"bootstrapped from the master's image at position (\d+)", pair.shadow.log.read_text()
    )
    assert found, "the shadow never bootstrapped"
    applied = _metric(pair.shadow, "shadowline_replicated_events_total")
    assert applied == head - int(found.group(1)), f"{applied} events applied for {head} positions"


# -- the broker, as an outsider who can publish to the cluster's exchanges --------------------


def _on_broker(work: Callable[[AbstractChannel], Awaitable[T]], url: str = AMQP_URL) -> T:
    async def run() -> T:
        connection = await aio_pika.connect(url, timeout=5)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            return await work(channel)
        finally:
            await connection.close()

    return asyncio.run(run())


def _publish(cluster: str, messages: list[tuple[str, aio_pika.Message]]) -> None:
    """Publish to the events exchange with the real routing keys (mandatory: must be routed)."""

    async def work(channel: AbstractChannel) -> None:
        exchange = await channel.get_exchange(Names(cluster).events, ensure=False)
        for routing_key, message in messages:
            await exchange.publish(message, routing_key, mandatory=True)

    _on_broker(work)


def _dead_lettered(queue: str, count: int) -> Callable[[], bool]:
    """Whether `count` messages are ready in `queue` (bound now, not when the loop has moved on)."""
    return lambda: _ready_messages(queue) == count


def _ready_messages(queue: str) -> int:
    async def work(channel: AbstractChannel) -> int:
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return int(count or 0)

    return _on_broker(work)


def _purge(queue: str) -> None:
    async def work(channel: AbstractChannel) -> None:
        await (await channel.get_queue(queue, ensure=False)).purge()

    _on_broker(work)


def _delete_queue(queue: str) -> None:
    async def work(channel: AbstractChannel) -> None:
        await channel.queue_delete(queue)

    _on_broker(work)


def _relayed(envelope: dict[str, Any]) -> tuple[str, aio_pika.Message]:
    """Exactly what the master's relay publishes for this envelope."""
    return message_for(from_envelope(envelope))


def _raw(
    body: bytes, position: int, routing_key: str = "config.system-mapping.put"
) -> tuple[str, aio_pika.Message]:
    message = aio_pika.Message(
        body,
        content_type="application/json",
        message_id=str(uuid.uuid4()),
        headers={"position": position, "epoch": 1, "type": "ConfigPut"},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    return routing_key, message


def _forged_next(last: Event, cluster: str, **changes: Any) -> Event:
    """A well-formed event right after `last` whose chain value follows from it: only the
    `changes` make it wrong."""
    event = Event(
        id=uuid.uuid4(),
        position=last.position + 1,
        epoch=last.epoch,
        type="ConfigPut",
        kind="system-mapping",
        name=f"forged-{uuid.uuid4().hex[:6]}",
        version=1,
        data=_mapping(7),
        metadata={"actor": "intruder"},
        recorded_at=datetime.now(UTC),
    )
    event = replace(event, **changes)
    return _signed(replace(event, chain=link(last.chain, event)), cluster)


def _signed(event: Event, cluster: str) -> Event:
    """Signed with the cluster's event key, as only a master of the cluster can: these tests
    try the checks behind the signature (test_attacks.py tries unsigned and forged ones)."""
    return replace(event, signature=trust.event_signature(SECRET, cluster, event))


def _stop_shadow_and_write(pair: Pair, count: int) -> tuple[str, int]:
    """SIGTERM the shadow, write `count` changes on the master and wait until the relay has
    queued them all in the shadow's durable queue. Returns (queue, master head)."""
    pair.shadow.stop()
    queue = Names(pair.cluster).replication_queue("shadow")
    write_mappings(pair.master, count, prefix="offline")
    # >=: a delivery the shadow applied but had not acked yet when it stopped is requeued
    wait_until(lambda: _ready_messages(queue) >= count, 15, f"{count} messages in the queue")
    head = _position(pair.master)
    assert head is not None
    return queue, head


class LoadWriter(threading.Thread):
    """Keeps PUTting on the master until stopped; records what it answered, and when."""

    def __init__(self, process: Process) -> None:
        super().__init__(daemon=True)
        self._process = process
        self.stopping = threading.Event()
        self.acks: list[int] = []  # acknowledged positions
        self.ack_times: list[float] = []  # time.monotonic() of each acknowledgement
        self.refusals: list[float] = []  # time.monotonic() of each 503 (may not write)
        self.errors: list[str] = []  # any other answer

    def run(self) -> None:
        with _client(self._process) as client:
            n = 0
            while not self.stopping.is_set():
                try:
                    response = client.put(f"/config/system-mapping/load-{n % 40}", json=_mapping(n))
                except httpx.HTTPError:  # the master is down: that request was never acked
                    time.sleep(0.05)
                    continue
                if response.status_code in (200, 201):
                    self.acks.append(int(response.json()["position"]))
                    self.ack_times.append(time.monotonic())
                elif response.status_code == 503:
                    self.refusals.append(time.monotonic())
                    time.sleep(0.05)
                else:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
                n += 1

    def wait_for_acks(self, more: int, timeout: float = 20) -> None:
        target = len(self.acks) + more
        try:
            wait_until(
                lambda: len(self.acks) >= target, timeout, f"{more} more acknowledged writes"
            )
        except AssertionError as error:
            popen = self._process.popen
            if popen is None:
                state = "not started"
            elif popen.poll() is None:
                state = "running"
            else:
                state = f"exited ({popen.returncode})"
            raise AssertionError(
                f"{error}; the master is {state}:\n{self._process.log.read_text()[-2000:]}"
            ) from None

    def finish(self) -> None:
        self.stopping.set()
        self.join(timeout=15)
        assert not self.is_alive(), "the load writer did not stop"


def assert_acks_replicated(pair: Pair, acks: list[int]) -> None:
    positions = {e["position"] for e in _envelopes(pair.shadow)}
    missing = sorted(set(acks) - positions)
    assert not missing, f"acknowledged positions missing on the shadow: {missing[:10]}"


# -- the tests -------------------------------------------------------------------------------


def test_duplicated_messages_are_skipped_not_applied_twice(pair: Pair) -> None:
    pair.set_up()
    write_mappings(pair.master, 20)
    before = assert_converged(pair)
    copies = [_relayed(e) for e in _envelopes(pair.master)]
    twice = copies + copies
    random.Random(3).shuffle(twice)
    _publish(pair.cluster, twice)
    write_mappings(pair.master, 10, prefix="after")
    head = assert_converged(pair)
    assert head == before + 10  # the copies added nothing
    assert_each_event_applied_once(pair, head)
    assert _ready_messages(Names(pair.cluster).dead_letter) == 0
    assert _dead_lettered_alerts(pair.shadow) == 0


def test_events_that_arrive_out_of_order_are_applied_in_position_order(pair: Pair) -> None:
    pair.set_up()
    write_mappings(pair.master, 5)
    assert_converged(pair)
    queue, head = _stop_shadow_and_write(pair, 50)
    _purge(queue)
    shuffled = [_relayed(e) for e in _envelopes(pair.master)[-50:]]
    random.Random(7).shuffle(shuffled)
    _publish(pair.cluster, shuffled)
    pair.shadow.start()
    assert assert_converged(pair, shadow_starts=2) == head
    assert _dead_lettered_alerts(pair.shadow) == 0


def test_events_lost_from_the_queue_are_fetched_from_the_master(pair: Pair) -> None:
    pair.set_up()
    write_mappings(pair.master, 5)
    assert_converged(pair)
    queue, head = _stop_shadow_and_write(pair, 50)
    _purge(queue)  # the shadow learns the master's head from its reports, not from the queue
    pair.shadow.start()
    assert assert_converged(pair, shadow_starts=2) == head


def test_messages_that_are_not_event_envelopes_are_dead_lettered_and_counted(pair: Pair) -> None:
    pair.set_up()
    write_mappings(pair.master, 5)
    head = assert_converged(pair)
    applied = _envelopes(pair.master)[-1]
    dead_letter = Names(pair.cluster).dead_letter
    routing_key, relabelled = _relayed(applied)
    relabelled.headers["position"] = head + 1  # the body says `head`
    poison = {
        "invalid JSON": _raw(b'{"position": 9, "kind": ', head + 1),
        "a JSON object that is no envelope": _raw(b'{"hello": "world"}', head + 1),
        "a JSON array": _raw(b"[1, 2, 3]", head + 1),
        "header position differs from the body": (routing_key, relabelled),
    }
    for n, (what, message) in enumerate(poison.items(), start=1):
        _publish(pair.cluster, [message])
        wait_until(_dead_lettered(dead_letter, n), 10, f"{what} to be dead-lettered")
    # None can be an event the master signed: rejected (alert.rejected-message, throttled).
    rejected = 'shadowline_rejected_messages_total{source="event"}'
    wait_until(lambda: _metric(pair.shadow, rejected) == len(poison), 5, "the rejection counter")
    write_mappings(pair.master, 10, prefix="after")
    assert assert_converged(pair) == head + 10


def test_envelopes_that_disagree_with_the_masters_log_are_dead_lettered_and_alerted(
    pair: Pair,
) -> None:
    """Each claims the next position, with a chain value that follows from the shadow's head,
    so only one thing is wrong with each."""
    pair.set_up()
    write_mappings(pair.master, 5)
    head = assert_converged(pair)
    last = from_envelope(_envelopes(pair.master)[-1])
    genuine = _forged_next(last, pair.cluster)
    poison = {
        "a local-only kind": _forged_next(
            last, pair.cluster, kind="log-level", name="root", data={"level": "DEBUG"}
        ),
        "epoch 0": _forged_next(last, pair.cluster, epoch=0),
        "tampered data, old chain value": _signed(
            replace(genuine, data=_mapping(666)), pair.cluster
        ),
    }
    dead_letter = Names(pair.cluster).dead_letter
    for n, (what, event) in enumerate(poison.items(), start=1):
        _publish(pair.cluster, [message_for(event)])
        wait_until(_dead_lettered(dead_letter, n), 10, f"{what} to be dead-lettered")
    wait_until(lambda: _dead_lettered_alerts(pair.shadow) == len(poison), 5, "the alert counter")
    write_mappings(pair.master, 10, prefix="after")
    assert assert_converged(pair) == head + 10
    assert not any(e["kind"] == "log-level" for e in _envelopes(pair.shadow))


def test_tampered_copies_of_events_the_master_has_are_dead_lettered(pair: Pair) -> None:
    """The master holds these positions: the shadow takes the master's copy and must still
    dead-letter the tampered messages, even when their chain value is the genuine one."""
    pair.set_up()
    write_mappings(pair.master, 5)
    assert_converged(pair)
    queue, head = _stop_shadow_and_write(pair, 5)
    _purge(queue)
    genuine = _envelopes(pair.master)[-5:]
    tampered_data = {**genuine[0], "data": _mapping(666)}  # chain value left as it was
    older_epoch = {**genuine[1], "epoch": 0}
    _publish(pair.cluster, [_relayed(e) for e in (tampered_data, older_epoch, *genuine[2:])])
    pair.shadow.start()
    assert assert_converged(pair, shadow_starts=2) == head
    dead_letter = Names(pair.cluster).dead_letter
    wait_until(lambda: _ready_messages(dead_letter) == 2, 10, "both tampered copies dead-lettered")
    # Their signatures no longer verify: rejected as unauthenticated, not applied.
    assert _metric(pair.shadow, 'shadowline_rejected_messages_total{source="event"}') == 2


def test_the_shadow_recovers_when_its_queue_is_deleted_under_it(pair: Pair) -> None:
    pair.set_up()
    write_mappings(pair.master, 5)
    assert_converged(pair)
    _delete_queue(Names(pair.cluster).replication_queue("shadow"))
    write_mappings(pair.master, 20, prefix="after")
    assert_each_event_applied_once(pair, assert_converged(pair, timeout=30))


def test_a_shadow_killed_mid_stream_resumes_without_applying_anything_twice(pair: Pair) -> None:
    pair.set_up()
    load = LoadWriter(pair.master)
    load.start()
    try:
        load.wait_for_acks(100)
        pair.shadow.signal(signal.SIGKILL)
        assert pair.shadow.wait(10) == -signal.SIGKILL
        load.wait_for_acks(100)
        pair.shadow.start()
        pair.shadow.wait_healthy(30)
        load.wait_for_acks(100)
    finally:
        load.finish()
    assert not load.errors, load.errors[:5]
    assert_converged(pair, shadow_starts=2, timeout=30)
    assert_acks_replicated(pair, load.acks)


def test_a_master_killed_under_write_load_resumes_relaying_from_its_cursor(pair: Pair) -> None:
    pair.set_up()
    load = LoadWriter(pair.master)
    load.start()
    try:
        load.wait_for_acks(150)
        pair.master.signal(signal.SIGKILL)
        assert pair.master.wait(10) == -signal.SIGKILL
        pair.master.start()
        pair.master.wait_healthy(30)
        load.wait_for_acks(100)
    finally:
        load.finish()
    assert not load.errors, load.errors[:5]  # 503 until the restarted master has its lease
    assert_each_event_applied_once(pair, assert_converged(pair, timeout=30))
    assert_no_crash_loop(pair.master, starts=2)
    assert_acks_replicated(pair, load.acks)
    assert _ready_messages(Names(pair.cluster).dead_letter) == 0  # re-sent events are no poison
