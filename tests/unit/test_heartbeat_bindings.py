"""The heartbeat listener binds its queue to its peers' heartbeats only, as the HA record names
them, never to its own (its own queue would hold its own heartbeats' confirms, the master's
lease, on a frozen broker node: entrypoints.amqp.heartbeats)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from shadowline.application.roles import CurrentRole
from shadowline.application.status import Identity, ShadowRelation
from shadowline.bootstrap import hearing
from shadowline.domain.ha import HaRecord
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.entrypoints.amqp import heartbeats
from shadowline.entrypoints.amqp.heartbeats import HeartbeatListener


class Queue:
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.failing = False

    async def bind(self, exchange: str, key: str) -> None:
        if self.failing:
            raise ConnectionError("the link is reconnecting")
        self.keys.add(key)

    async def unbind(self, exchange: str, key: str) -> None:
        if self.failing:
            raise ConnectionError("the link is reconnecting")
        self.keys.discard(key)

    async def consume(self, callback: Any, no_ack: bool) -> None:
        pass


class Broker:
    def __init__(self) -> None:
        self.queue = Queue()
        self.asked: list[tuple[str, ...]] = []

    async def heartbeat_queue(self, instances: Iterable[str] = ("*",)) -> Queue:
        self.asked.append(tuple(instances))
        return self.queue


def listener(broker: Broker, peers: list[str | None]) -> HeartbeatListener:
    return HeartbeatListener(
        instance="node-a", cluster="c1", secret="s", broker=broker, peers=lambda: peers
    )


async def test_the_queue_hears_the_peers_the_record_names_and_never_itself() -> None:
    broker, peers = Broker(), ["node-a", None]  # a master without a shadow yet
    heard = listener(broker, peers)
    await heard.listen(lambda beat: None)
    assert broker.asked == [()]  # declared unbound: never `heartbeat.*`
    assert broker.queue.keys == set()
    peers[1] = "node-b"  # a shadow joined
    await heard.bind_peers()
    assert broker.queue.keys == {"heartbeat.node-b"}
    peers[:] = ["node-c", "node-a"]  # a fenced old master's record, after a failover to node-c
    await heard.bind_peers()
    assert broker.queue.keys == {"heartbeat.node-c"}


async def test_a_name_that_would_widen_the_binding_is_never_bound() -> None:
    broker = Broker()
    heard = listener(broker, ["#", "node-*", "a.b", "x" * 64, "node-b"])
    await heard.listen(lambda beat: None)
    assert broker.queue.keys == {"heartbeat.node-b"}


async def test_a_bind_that_fails_while_the_link_reconnects_is_tried_again() -> None:
    broker, peers = Broker(), list[str | None](["node-a", "node-b"])
    heard = listener(broker, peers)
    broker.queue.failing = True
    await heard.listen(lambda beat: None)
    assert (broker.queue.keys, heard.bound) == (set(), set())
    broker.queue.failing = False
    await heard.bind_peers()
    assert broker.queue.keys == {"heartbeat.node-b"}
    peers[1] = None  # the shadow removed, while unbinding fails once
    broker.queue.failing = True
    await heard.bind_peers()
    assert heard.bound == {"node-b"}
    broker.queue.failing = False
    await heard.bind_peers()
    assert (broker.queue.keys, heard.bound) == (set(), set())


async def test_following_the_peers_never_ends_for_an_error_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It runs in one task group with the heartbeats (Liveness.run): an error ending it would
    end the heartbeats, and the master's lease with them."""
    broker, calls = Broker(), []

    def peers() -> list[str]:
        calls.append(1)
        raise RuntimeError("the HA record is being replaced")

    heard = HeartbeatListener(instance="a", cluster="c1", secret="s", broker=broker, peers=peers)
    heard._queue = broker.queue
    monkeypatch.setattr(heartbeats, "FOLLOW_EVERY", 0.01)
    task = asyncio.create_task(heard.follow_peers())
    await asyncio.sleep(0.1)
    assert not task.done() and len(calls) > 2
    task.cancel()


async def test_anyone_but_a_master_that_may_write_hears_every_instance() -> None:
    """A fenced master lifts its fence once no newer master was heard for a takeover delay:
    the newer one may be an instance its HA record does not name, so it hears all of them."""
    broker, peers = Broker(), list[str | None](["node-a", "node-b"])
    heard = listener(broker, peers)
    await heard.listen(lambda beat: None)
    assert broker.queue.keys == {"heartbeat.node-b"}
    peers.append("*")  # fenced
    await heard.bind_peers()
    assert broker.queue.keys == {"heartbeat.*"}
    peers.remove("*")  # the fence lifted
    await heard.bind_peers()
    assert broker.queue.keys == {"heartbeat.node-b"}


def test_the_names_heard_follow_the_role_and_the_record() -> None:
    record = HaRecord(
        role="master", epoch=3, auto_confirm=False, master_instance="node-a",
        master_url="http://a", shadow_instance="node-b", shadow_url="http://b",
        shadow_state="confirmed", shadow_position=1, shadow_seen_at=None,
    )  # fmt: skip
    role = CurrentRole(RoleState(Role.MASTER, 3))
    identity = Identity("node-a", role, lambda: 0, ShadowRelation())
    assert hearing.peers(identity) == ()
    identity.record = record
    assert hearing.peers(identity) == ("node-a", "node-b")
    role.set(RoleState(Role.MASTER, 3).fenced_by(FenceReason.LEASE_LOST, "no lease"))
    assert "*" in hearing.peers(identity)
    role.set(RoleState(Role.SHADOW, 4))
    assert "*" in hearing.peers(identity)
