"""An attacker with nothing but a broker login (guest) against a master, its shadow and a
watchdog as real processes: forged and replayed heartbeats, forged and replayed events, poison
positions, and a fake instance answering HTTP at a dead master's URL.

Each test asserts that nothing changed (roles, epochs, the served state, the chain, no
acknowledged write lost), that every forged input was counted, and that the alert was raised.
The tests know the cluster secret only where they play a master of the cluster on purpose.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import orjson
import uvicorn
from fastapi import FastAPI

from shadowline.adapters import peer as peer_signing
from shadowline.adapters.broker import Names, message_for
from shadowline.domain import keys, trust
from shadowline.domain.events import Event, envelope, from_envelope, link
from tests.conftest import AMQP_URL
from tests.e2e import failover_fixtures
from tests.e2e.conftest import Process
from tests.e2e.failover_fixtures import (
    HaCluster,
    admin,
    events,
    health,
    mapping,
    wait_for,
    wait_role,
)
from tests.integration import raw_amqp

ha_cluster = failover_fixtures.ha_cluster
SECRET = "e2e-secret"  # what tests.e2e.conftest.make_process gives every instance


# -- the attacker's tools ------------------------------------------------------------------------


def publish(cluster: str, exchange: str, messages: list[tuple[str, aio_pika.Message]]) -> None:
    """Publish as `guest`, any login the broker accepts: what every attack here starts from."""

    async def send() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            target = await channel.get_exchange(f"shadowline.{cluster}.{exchange}", ensure=False)
            for routing_key, message in messages:
                await target.publish(message, routing_key)

    asyncio.run(send())


def json_message(body: Any, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(orjson.dumps(body), content_type="application/json", headers=headers)


@contextmanager
def alerts(cluster: str) -> Iterator[list[dict[str, Any]]]:
    """Every alert.* published on the cluster's monitoring exchange while the block runs."""
    seen: list[dict[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()

    async def listen() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(f"shadowline.{cluster}.monitoring", "alert.#")
            ready.set()
            while not stop.is_set():
                message = await queue.get(fail=False, no_ack=True)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    seen.append({**orjson.loads(message.body), "headers": message.headers})

    thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    thread.start()
    assert ready.wait(10), "could not listen to the monitoring exchange"
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)


def metric(process: Process, sample: str) -> float:
    with admin(process) as client:
        text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def rejected(process: Process, source: str) -> float:
    return metric(process, f'shadowline_rejected_messages_total{{source="{source}"}}')


def state(process: Process) -> dict[str, Any]:
    """What must not change under attack: role, epoch, the served config and the chain."""
    with admin(process) as client:
        config = client.get("/config").json()
        ha = client.get("/ha").json()
        verify = client.get("/audit/verify").json()
    return {
        "role": ha["role"],
        "epoch": ha["epoch"],
        "fenced": ha["fenced"],
        "items": config["items"],
        "chain": verify.get("chain"),
        "ok": verify["ok"],
    }


def put(process: Process, name: str, n: int) -> dict[str, Any]:
    with admin(process) as client:
        response = client.put(f"/config/system-mapping/{name}", json=mapping(name, n))
    assert response.status_code in (200, 201), response.text
    written: dict[str, Any] = response.json()
    return written


def converged(cluster: HaCluster) -> bool:
    master, shadow = health(cluster.master), health(cluster.shadow)
    return bool(master and shadow and master["position"] == shadow["position"])


def assert_same_log(cluster: HaCluster) -> None:
    wait_for(lambda: converged(cluster), 20, "the shadow to catch up")
    assert events(cluster.master) == events(cluster.shadow)


def forged_heartbeat(cluster: str, url: str, epoch: int, **extra: Any) -> dict[str, Any]:
    return {
        "instance": "evil",
        "role": "master",
        "epoch": epoch,
        "committed": 10**6,
        "applied": 10**6,
        "replication": "async",
        "acked": 10**6,
        "peer": None,
        "peer_url": None,
        "maintenance": False,
        "cluster": cluster,
        "url": url,
        "seq": 1,
        "boot": "0123456789abcdef",
        "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "interval": 0.5,
        **extra,
    }


def captured_heartbeat(cluster: str, instance: str) -> tuple[bytes, dict[str, Any]]:
    """One genuine heartbeat of `instance`, as the broker delivers it (body and headers)."""

    async def capture() -> tuple[bytes, dict[str, Any]]:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(f"shadowline.{cluster}.monitoring", f"heartbeat.{instance}")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                message = await queue.get(fail=False, no_ack=True)
                if message is not None:
                    return message.body, dict(message.headers)
                await asyncio.sleep(0.05)
        raise AssertionError(f"no heartbeat of {instance} heard")

    return asyncio.run(capture())


# -- forged and replayed heartbeats --------------------------------------------------------------


def test_forged_and_replayed_heartbeats_change_no_role_epoch_or_state(
    ha_cluster: HaCluster,
) -> None:
    """Issue 9, attack 1: `heartbeat.evil` claiming master in a high epoch made the real master
    fence itself, quarantine acknowledged events and follow the attacker's URL; the watchdog
    took the forged master for real."""
    ha_cluster.set_up()
    cluster, master, shadow = ha_cluster.cluster, ha_cluster.master, ha_cluster.shadow
    for n in range(8):
        put(master, f"before{n}", n)
    assert_same_log(ha_cluster)
    before = state(master)
    genuine, genuine_headers = captured_heartbeat(cluster, "node-a")
    shadow_beat, shadow_headers = captured_heartbeat(cluster, "node-b")
    beats = {
        "no MAC, epoch 99, an unreachable URL": (
            "heartbeat.evil",
            forged_heartbeat(cluster, "http://127.0.0.1:9", 99),
            {},
        ),
        "no MAC, epoch 2**31, the shadow's URL": (
            "heartbeat.evil",
            forged_heartbeat(cluster, shadow.url, 2**31 - 1),
            {},
        ),
        "a MAC of another secret": (
            "heartbeat.evil",
            forged_heartbeat(cluster, "http://127.0.0.1:9", 50),
            {trust.MAC_HEADER: keys.mac("not-the-secret", keys.HEARTBEAT, b"anything")},
        ),
        "the master's genuine MAC on a body with a higher epoch": (
            "heartbeat.node-a",
            {**orjson.loads(genuine), "epoch": 77, "seq": 10**9},
            genuine_headers,
        ),
        "a genuine shadow heartbeat, with its MAC, re-routed as another instance's": (
            "heartbeat.evil",
            orjson.loads(shadow_beat),
            shadow_headers,
        ),
        "a monitoring MAC used for a heartbeat": (
            "heartbeat.evil",
            forged_heartbeat(cluster, "http://127.0.0.1:9", 60),
            {},
        ),
    }
    body = orjson.dumps(beats["a monitoring MAC used for a heartbeat"][1])
    beats["a monitoring MAC used for a heartbeat"][2][trust.MAC_HEADER] = keys.mac(
        SECRET, keys.MONITORING, keys.parts(cluster, "heartbeat.evil", body)
    )
    # An instance hears its peer's heartbeats only (entrypoints.amqp.heartbeats): each forged
    # one goes out under a name nobody has, and under each instance's, so both hear it.
    keys_of = {"heartbeat.evil": ("heartbeat.evil", "heartbeat.node-a", "heartbeat.node-b")}
    with alerts(cluster) as raised:
        for _ in range(10):  # for several heartbeat intervals: any effect would show
            messages = [
                (routed, aio_pika.Message(orjson.dumps(doc), headers=dict(h)))
                for key, doc, h in beats.values()
                for routed in keys_of.get(key, (key,))
            ]
            # the genuine heartbeat, byte for byte and with its MAC, replayed: stale
            messages.append(
                ("heartbeat.node-a", aio_pika.Message(genuine, headers=genuine_headers))
            )
            publish(cluster, "monitoring", messages)
            time.sleep(0.25)
        put(master, "during", 1)  # the master still takes writes
        # the shadow hears those under node-a's name (all of them), the master those under
        # node-b's (all but the two under its own name)
        wait_for(lambda: rejected(shadow, "heartbeat") >= 10 * (len(beats) + 1), 10, "rejections")
        wait_for(lambda: rejected(master, "heartbeat") >= 10 * (len(beats) - 1), 10, "rejections")
        ha_cluster.watchdog.wait_logged("rejected heartbeat", 10)
        wait_for(lambda: any(a["alert"] == "rejected-message" for a in raised), 10, "the alert")
    after = state(master)
    assert {k: v for k, v in after.items() if k not in ("items", "chain")} == {
        k: v for k, v in before.items() if k not in ("items", "chain")
    }
    assert after["role"] == "master" and after["epoch"] == 1 and after["fenced"] is None
    assert set(after["items"]) == set(before["items"]) | {"system-mapping/during"}
    assert state(shadow)["role"] == "shadow" and state(shadow)["epoch"] == 1
    with admin(master) as client:
        assert client.get("/ha/quarantine").json()["count"] == 0
    lines = ha_cluster.watchdog.text().splitlines()
    assert [line for line in lines if "evil" in line and "rejected" not in line] == []
    assert not [line for line in lines if "probing" in line or "promot" in line]
    # alerts are throttled: a few, not one per forged heartbeat
    assert sum(a["alert"] == "rejected-message" for a in raised) <= 6
    assert all(trust.MAC_HEADER in a["headers"] for a in raised)  # genuine alerts are signed
    assert_same_log(ha_cluster)


def test_messages_no_client_library_would_write_cut_no_instance_or_watchdog_off_the_broker(
    ha_cluster: HaCluster,
) -> None:
    """A headers table with a key that is not UTF-8, or such a routing key, made aiormq close
    the whole connection of every instance that heard it (the master's heartbeat publisher, its
    lease, with it), and a replicated one came back after each reconnection; the watchdog's own
    consumer dropped its connection too. Now each is one unauthenticated message, refused."""
    ha_cluster.set_up()
    cluster, master, shadow = ha_cluster.cluster, ha_cluster.master, ha_cluster.shadow
    put(master, "before", 1)
    assert_same_log(ha_cluster)
    watchdog = ha_cluster.watchdog
    marks = {"master": master.size(), "shadow": shadow.size(), "watchdog": watchdog.size()}
    names = Names(cluster)
    forged: list[tuple[bytes, bytes, bytes | None, bytes]] = []
    for table in (raw_amqp.BAD_KEY_TABLE, raw_amqp.NESTED_BAD_KEY_TABLE):
        beat = orjson.dumps(forged_heartbeat(cluster, "http://127.0.0.1:9", 99))
        # Under each instance's name: an instance hears its peer's heartbeats only, and the
        # watchdog every instance's.
        for name in (master.name, shadow.name):
            forged.append((names.monitoring.encode(), f"heartbeat.{name}".encode(), table, beat))
        forged.append((names.events.encode(), b"config.system-mapping.put", table, b"{}"))
        forged.append((names.commands.encode(), b"config.put.system-mapping", table, b"{}"))
    forged.append((names.monitoring.encode(), raw_amqp.NOT_UTF8_KEY, None, b"{}"))
    with alerts(cluster) as raised:
        for _ in range(3):
            assert asyncio.run(raw_amqp.publish_raw(AMQP_URL, forged)) == "200 done"
            time.sleep(0.5)
        wait_for(lambda: rejected(shadow, "event") >= 6, 15, "the forged events refused")
        wait_for(lambda: rejected(shadow, "heartbeat") >= 6, 15, "the forged heartbeats refused")
        wait_for(lambda: rejected(master, "heartbeat") >= 6, 15, "the forged heartbeats refused")
        watchdog.wait_logged("rejected heartbeat", 10, marks["watchdog"])
        put(master, "after", 1)  # the master still takes writes, replicated in sync
        wait_for(lambda: any(a["alert"] == "rejected-message" for a in raised), 10, "the alert")
    assert_same_log(ha_cluster)
    for name, process in (("master", master), ("shadow", shadow)):
        said = process.text(marks[name])
        assert "connection to RabbitMQ node" not in said and "reconnected" not in said, said
    said = watchdog.text(marks["watchdog"])
    assert "heartbeat consumer on" not in said and "dropped a delivery" not in said, said
    with admin(master) as client:
        ha = client.get("/ha").json()
    assert (ha["role"], ha["epoch"], ha["replication"]) == ("master", 1, "sync")
    assert state(shadow)["role"] == "shadow"


# -- forged, replayed and poison events ----------------------------------------------------------


def _next(last: Event, **changes: Any) -> Event:
    event = Event(
        id=uuid.uuid4(),
        position=last.position + 1,
        epoch=last.epoch,
        type="ConfigPut",
        kind="system-mapping",
        name="erp",
        version=1,
        data={**mapping("erp", 1), "internal_host": "evil.example"},
        metadata={"actor": "intruder", "request_id": "x"},
        recorded_at=datetime.now(UTC),
    )
    event = replace(event, **changes)
    return replace(event, chain=link(last.chain, event))


def _raw(body: bytes, position: int) -> tuple[str, aio_pika.Message]:
    return "config.system-mapping.put", aio_pika.Message(body, headers={"position": position})


def test_forged_replayed_and_poison_events_are_refused_alone_and_replication_goes_on(
    ha_cluster: HaCluster,
) -> None:
    """Issue 9, attacks 2 and 3: an unkeyed chain let anyone compute the next link; a forged
    event at head + 1 was applied, and the master's real write there then acked as a
    duplicate. A position of 2**80 stalled replication; head + 40,000,000 cost 1.6 GB."""
    ha_cluster.set_up(watchdog=False)
    cluster, master, shadow = ha_cluster.cluster, ha_cluster.master, ha_cluster.shadow
    put(master, "erp", 1)
    assert_same_log(ha_cluster)
    last = from_envelope(events(master)[-1])
    genuine_old = envelope(from_envelope(events(master)[-1]))
    forged = {
        "unsigned, next link computed (extra property)": _next(
            last, data={**mapping("erp", 2), "internal_host": "evil", "extra": 1}
        ),
        "unsigned, next link computed": _next(last),
        "signed with another secret": replace(_next(last), signature=b"\x01" * 32),
        "far ahead, unsigned": _next(last, position=last.position + 40_000_000),
        "a genuine event's signature on changed data": replace(
            _next(last), signature=last.signature
        ),
    }
    poison = {
        "position 2**80": _raw(
            orjson.dumps({**genuine_old, "position": 0}).replace(
                b'"position":0', b'"position":1208925819614629174706176'
            ),
            last.position + 1,
        ),
        "position as a 5000-digit string": _raw(
            orjson.dumps({**genuine_old, "position": "9" * 5000}), last.position + 1
        ),
        "a chain of 3 bytes": _raw(orjson.dumps({**genuine_old, "chain": "abcdef"}), last.position),
    }
    before_shadow = state(shadow)
    dead_letter = Names(cluster).dead_letter
    with alerts(cluster) as raised:
        messages = [message_for(e) for e in forged.values()]
        messages += list(poison.values())
        # a genuine old event, replayed: a duplicate, compared by chain and acked
        messages.append(message_for(from_envelope(genuine_old)))
        publish(cluster, "events", messages)
        # none of them can be authenticated: each is counted and dead-lettered, one by one
        wanted = len(forged) + len(poison)
        wait_for(lambda: rejected(shadow, "event") == wanted, 15, "every forged event rejected")
        # the valid events around the poison go on: sync replication keeps acknowledging
        for n in range(5):
            put(master, f"after{n}", n)
        wait_for(lambda: any(a["alert"] == "rejected-message" for a in raised), 10, "the alert")
    assert_same_log(ha_cluster)
    with admin(master) as client:
        assert client.get("/ha").json()["replication"] == "sync"
        assert client.get("/ha").json()["shadow"]["diverged"] is None
    after_shadow = state(shadow)
    assert after_shadow["role"] == before_shadow["role"] == "shadow"
    assert after_shadow["items"]["system-mapping/erp"] == mapping("erp", 1)
    assert all(v["internal_host"] != "evil.example" for v in after_shadow["items"].values())
    assert after_shadow["ok"] is True
    assert _queue_depth(dead_letter) == len(forged) + len(poison)
    # throttled: one alert per source and 10 s, with the count, however many arrive
    assert sum(a["alert"] == "rejected-message" for a in raised) <= 2
    assert metric(shadow, 'shadowline_alerts_total{name="dead-lettered"}') == 0


def _queue_depth(name: str) -> int:
    async def depth() -> int:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            return queue.declaration_result.message_count or 0

    return asyncio.run(depth())


def test_a_signed_event_of_another_timeline_at_a_held_position_is_rejected_not_a_divergence(
    ha_cluster: HaCluster,
) -> None:
    """A position the shadow holds is compared, never acked blindly. A validly signed event
    that differs there (here the test signs one, as an old master of the cluster could have
    before a failover) is checked against the master's own log: the master agrees with the
    shadow, so it is a replay of another timeline, rejected, and nothing is flagged."""
    ha_cluster.set_up(watchdog=False)
    cluster, master, shadow = ha_cluster.cluster, ha_cluster.master, ha_cluster.shadow
    put(master, "erp", 1)
    assert_same_log(ha_cluster)
    held = from_envelope(events(master)[-1])
    before = from_envelope(events(master)[-2])
    fork = _next(before, position=held.position)
    fork = replace(fork, signature=trust.event_signature(SECRET, cluster, fork))
    rejected_before = rejected(shadow, "event")
    publish(cluster, "events", [message_for(fork)])
    wait_for(lambda: rejected(shadow, "event") == rejected_before + 1, 10, "the rejection")
    with admin(master) as client:
        assert client.get("/ha").json()["shadow"]["diverged"] is None
        put(master, "later", 1)
        assert client.get("/ha").json()["replication"] == "sync"
    assert metric(shadow, 'shadowline_alerts_total{name="divergence"}') == 0
    assert_same_log(ha_cluster)


def test_a_shadow_whose_reported_chain_differs_is_diverged_and_its_acks_stop_counting(
    ha_cluster: HaCluster,
) -> None:
    """The master compares the chain value the shadow reports at its position with its own:
    a shadow whose log differs never counts for sync mode. (Sent here as the shadow would,
    signed: only a holder of the cluster secret can.)"""
    ha_cluster.set_up(watchdog=False)
    cluster, master = ha_cluster.cluster, ha_cluster.master
    put(master, "erp", 1)
    assert_same_log(ha_cluster)
    head = health(master)
    assert head is not None
    body = orjson.dumps({"position": head["position"], "chain": "00" * 32})
    with alerts(cluster) as raised:
        signed = peer_signing.sign(SECRET, cluster, "node-b", "POST", "/ha/peer/ack", body)
        answer = httpx.post(
            f"{master.url}/ha/peer/ack",
            content=body,
            headers={**signed, "Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: any(a["alert"] == "divergence" for a in raised), 10, "alert.divergence")
    with admin(master) as client:
        seen = client.get("/ha").json()["shadow"]["diverged"]
        assert seen["position"] == head["position"]
        response = client.put("/config/system-mapping/later", json=mapping("later", 1))
        assert response.status_code in (200, 201), response.text  # degraded, not blocked
        assert client.get("/ha").json()["replication"] == "async"
    # the same signed request again is a replay: refused, and its answer is not authenticated
    again = httpx.post(
        f"{master.url}/ha/peer/ack",
        content=body,
        headers={**signed, "Content-Type": "application/json"},
    )
    assert again.status_code == 403 and peer_signing.ANSWER_HEADER not in again.headers


# -- a fake instance answering HTTP ---------------------------------------------------------------


class FakeInstance:
    """An HTTP server at a given port that answers like an instance, without the keys."""

    def __init__(self, port: int, doc: dict[str, Any]) -> None:
        app = FastAPI()
        app.get("/health")(lambda: doc)
        app.get("/ha/peer/fork")(
            lambda: {"instance": "evil", "chain": "00" * 32, "fork_position": 0, "epoch": 99}
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeInstance:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the fake instance to listen")
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_a_fake_instance_answering_at_the_dead_masters_url_does_not_stop_the_failover(
    ha_cluster: HaCluster,
) -> None:
    """The watchdog's probe is signed and its answer must be authenticated: a fake master at
    the real master's address (answering /health as master) counts as no answer."""
    ha_cluster.set_up()
    master = ha_cluster.master
    put(master, "erp", 1)
    assert_same_log(ha_cluster)
    port = int(master.url.rsplit(":", 1)[1])
    alive = health(master)
    assert alive is not None
    master.signal(signal.SIGKILL)
    master.wait()
    wait_for(lambda: _free(port), 10, "the master's port to be free")
    with FakeInstance(port, alive):
        promoted = wait_role(ha_cluster.shadow, "master", 2, timeout=20)
        assert promoted
        ha_cluster.watchdog.wait_logged("rejected peer-answer", 5)
    assert "answers its probe as master" not in ha_cluster.watchdog.text()


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_peer_answer_without_the_clusters_mac_is_never_used() -> None:
    """Fork points, history pages and images come from the other instance over HTTP: an
    answer that is not authenticated (a fake peer, a proxy that changes a byte) is refused
    before it is read, and counted."""
    from shadowline.adapters.peer import PeerClient
    from shadowline.domain.errors import Unauthenticated

    fake = FastAPI()
    fake.get("/ha/peer/fork")(
        lambda: {"instance": "evil", "chain": "00" * 32, "fork_position": 0, "epoch": 99}
    )

    @fake.get("/ha/peer/events")
    def page() -> Any:
        from fastapi.responses import Response

        return Response(
            b'{"position": 1}\n{"answer": "' + b"0" * 64 + b'"}\n',
            media_type="application/x-ndjson",
        )

    async def run() -> list[str]:
        refused: list[str] = []
        client = PeerClient(
            "http://fake", SECRET, "node-a", cluster="prod", on_rejected=refused.append
        )
        client._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fake), base_url="http://fake"
        )
        for call in (
            client.call("GET", "/ha/peer/fork", params={"after_epoch": 1}),
            client.lines("/ha/peer/events", {"after": 0, "limit": 1}),
        ):
            try:
                await call
            except Unauthenticated:
                continue
            raise AssertionError("an unauthenticated answer was used")
        await client.close()
        return refused

    assert len(asyncio.run(run())) == 2
