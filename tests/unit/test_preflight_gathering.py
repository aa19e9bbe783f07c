"""What application.preflight gathers before the rules judge it, over twins of the HA service,
its peer and the monitoring feed, with the clocks passed in: how the peer's clock is estimated,
that a timed-out probe stops the rest, that concurrent callers share one run, that a peer's
answer which is not the expected document counts as none, and which maintenance flag counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from shadowline.application.preflight import REUSE_FOR, Preflight
from shadowline.domain.errors import PeerUnreachable, Unauthenticated, Unavailable
from shadowline.domain.ha import HaRecord
from shadowline.domain.preflight_reach import NodeAnswer
from shadowline.settings import Settings

SETTINGS = Settings(
    instance="node-a", takeover_delay=5, heartbeat_interval=1, cluster_secret=SecretStr("s" * 32)
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Heard:
    received_at: datetime
    routing_key: str
    body: dict[str, Any]


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Feed:
    heartbeats: list[Heard] = field(default_factory=list)
    watchdogs: list[Heard] = field(default_factory=list)

    def latest_heartbeats(self) -> list[Heard]:
        return self.heartbeats

    def watchdogs_seen(self) -> list[Heard]:
        return self.watchdogs


def about(peer_time: float, **changes: Any) -> dict[str, Any]:
    return {
        "instance": "node-b", "role": "shadow", "epoch": 1, "version": "0.1.0",
        "revision": "0006", "lease": 3.0, "lease_margin": 1.0, "takeover_delay": 5.0,
        "heartbeat_interval": 1.0, "lag_events": 0, "lag_seconds": 0.0, "time": peer_time,
        **changes,
    }  # fmt: skip


class Peer:
    """One connection's client: answers each call from `answer(path)`, which may raise, and
    moves the clock on by `takes` seconds per call."""

    def __init__(self, pair: Pair) -> None:
        self._pair = pair

    async def call(self, method: str, path: str, *_: Any, **__: Any) -> Any:
        self._pair.calls.append(path)
        self._pair.clock.now += self._pair.takes
        await asyncio.sleep(0)
        return self._pair.answer(path)

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        raise AssertionError("not used")

    async def close(self) -> None:
        self._pair.closed += 1


@dataclass
class Pair:
    answer: Callable[[str], Any]
    clock: Clock = field(default_factory=Clock)
    role: str = "master"
    takes: float = 0.2
    calls: list[str] = field(default_factory=list)
    closed: int = 0

    @property
    def settings(self) -> Settings:
        return SETTINGS

    @property
    def record(self) -> HaRecord:
        on_master = self.role == "master"
        return HaRecord(
            role=self.role, epoch=1, auto_confirm=False,
            master_instance=None if on_master else "node-a",
            master_url=None if on_master else "http://a",
            shadow_instance="node-b" if on_master else None,
            shadow_url="http://b" if on_master else None,
            shadow_state="confirmed" if on_master else None,
            shadow_position=5, shadow_seen_at=None,
        )  # fmt: skip

    async def status(self) -> dict[str, Any]:
        if self.role == "shadow":
            return {
                "role": "shadow", "epoch": 1, "replication": "sync", "confirmed": True,
                "master": {"instance": "node-a", "url": "http://a"},
                "lag": {"events": 0, "seconds": 0.0}, "last_contact_age": 0.2,
            }  # fmt: skip
        shadow = {"instance": "node-b", "state": "connected", "lag_events": 0,
                  "last_seen_age": 0.3}  # fmt: skip
        return {"role": "master", "epoch": 1, "replication": "sync", "maintenance": False,
                "shadow": shadow}  # fmt: skip

    def peer(self, url: str, instance: str | None = None, timeout: float = 10.0) -> Peer:
        assert timeout == 10.0  # the timeouts every peer call has
        return Peer(self)


async def nodes() -> list[NodeAnswer]:
    return [NodeAnswer("127.0.0.1:5672", 0.01, None)]


async def revision() -> str:
    return "0006"


def preflight(pair: Pair, feed: Feed | None = None) -> Preflight:
    return Preflight(
        ha=pair, feed=feed, nodes=nodes, revision=revision, wall=pair.clock, tick=pair.clock
    )


def watchdog(clock: Clock, ago: float, off: float = 0.0, **body: Any) -> Heard:
    sent = clock.now - ago + off
    doc = {"watchdog": "w1", "phase": "watching", "maintenance": False, "interval": 5.0,
           "at": sent, **body}  # fmt: skip
    return Heard(at(clock.now - ago), "failover.watchdog", doc)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


async def test_a_healthy_pair_passes_every_check() -> None:
    pair = Pair(lambda path: about(0) if path == "/ha/peer/about" else {"role": "shadow"})
    pair.answer = lambda path: (
        about(pair.clock.now - 0.1) if path == "/ha/peer/about" else {"role": "shadow"}
    )
    feed = Feed(watchdogs=[watchdog(pair.clock, 1.0)])
    doc = await preflight(pair, feed).run()
    assert doc["ok"], doc
    assert pair.calls == ["/ha/peer/about"] + ["/health"] * 5
    assert pair.closed == 6  # each probe on a connection of its own


async def test_the_peer_clock_is_its_answers_time_against_the_middle_of_the_call() -> None:
    pair = Pair(lambda path: {})
    # Sent at t, answered at t + 0.2 (one call), stamped 10 s ahead of our clock's middle.
    start = pair.clock.now
    pair.answer = lambda path: about(start + 0.1 + 10.0) if "about" in path else {}
    feed = Feed(watchdogs=[watchdog(pair.clock, 1.0, off=-0.5)])
    clocks = by_name(await preflight(pair, feed).run())["clocks"]
    assert clocks["ok"], clocks
    assert "node-b +10.000 s (signed call, ±100.0 ms)" in clocks["detail"]
    assert "watchdog w1 -0.500 s" in clocks["detail"]

    pair.answer = lambda path: about(pair.clock.now - 0.1 + 8.0) if "about" in path else {}
    feed = Feed(watchdogs=[watchdog(pair.clock, 1.0, off=-8.0)])
    clocks = by_name(await preflight(pair, feed).run())["clocks"]
    assert not clocks["ok"] and "differ by 16.0 s" in clocks["detail"]


async def test_without_a_signed_answer_the_peer_clock_comes_from_its_last_heartbeat() -> None:
    pair = Pair(lambda path: (_ for _ in ()).throw(PeerUnreachable("refused")))
    sent = datetime.fromtimestamp(pair.clock.now - 1.0 + 3.0, UTC).isoformat()
    beat = Heard(at(pair.clock.now - 1.0), "heartbeat.node-b",
                 {"instance": "node-b", "sent_at": sent})  # fmt: skip
    feed = Feed(heartbeats=[beat], watchdogs=[watchdog(pair.clock, 1.0)])
    doc = await preflight(pair, feed).run()
    found = by_name(doc)
    assert "node-b +3.000 s (its last heartbeat)" in found["clocks"]["detail"]
    assert not found["version"]["ok"] and not found["peer-probes"]["ok"]
    assert (
        "0/5 signed calls of node-b answered: 0 timed out, 5 failed"
        in (found["peer-probes"]["detail"])
    )


def timeout(path: str) -> Any:
    if path == "/ha/peer/about":
        return about(1_000_000.1)
    try:
        raise TimeoutError()
    except TimeoutError as cause:
        raise Unavailable("peer http://b unreachable: ReadTimeout") from cause


async def test_a_probe_that_times_out_stops_the_rest() -> None:
    pair = Pair(timeout)
    found = by_name(await preflight(pair, Feed()).run())
    assert pair.calls == ["/ha/peer/about", "/health"]
    assert (
        "0/5 signed calls of node-b answered: 1 timed out, 0 failed, 4 not sent"
        in (found["peer-probes"]["detail"])
    )


@pytest.mark.parametrize(
    "answer",
    [about(0, version=None), about(0, lease="3"), about(0, time=True), ["not", "an object"]],
)
async def test_an_authenticated_answer_that_is_not_the_document_counts_as_none(
    answer: Any,
) -> None:
    pair = Pair(lambda path: answer if "about" in path else {})
    found = by_name(await preflight(pair, Feed()).run())
    assert not found["version"]["ok"] and "not known" in found["version"]["detail"]


async def test_an_answer_that_fails_authentication_is_an_error_of_the_probe() -> None:
    def forged(path: str) -> Any:
        raise Unauthenticated("answer of http://b GET /health: not authenticated")

    found = by_name(await preflight(Pair(forged), Feed()).run())
    assert "Unauthenticated" in found["peer-probes"]["detail"]


async def test_concurrent_preflights_share_one_run() -> None:
    pair = Pair(lambda path: about(1_000_000.1) if "about" in path else {})
    check = preflight(pair, Feed())
    first, second = await asyncio.gather(check.run(), check.run())
    assert first == second
    assert pair.calls.count("/ha/peer/about") == 1
    await check.run()  # finished just now: its answer stands
    assert pair.calls.count("/ha/peer/about") == 1
    pair.clock.now += REUSE_FOR
    await check.run()  # after that, the next caller gets a new run
    assert pair.calls.count("/ha/peer/about") == 2


async def test_on_a_shadow_maintenance_is_what_the_masters_heartbeat_says() -> None:
    pair = Pair(lambda path: about(1_000_000.1, role="master") if "about" in path else {})
    pair.role = "shadow"
    beat = Heard(at(pair.clock.now), "heartbeat.node-a",
                 {"instance": "node-a", "maintenance": True})  # fmt: skip
    feed = Feed(heartbeats=[beat], watchdogs=[watchdog(pair.clock, 1.0)])
    found = by_name(await preflight(pair, feed).run())
    assert found["role"]["ok"] and "the shadow of node-a" in found["role"]["detail"]
    assert not found["watchdog"]["ok"] and "maintenance mode is on" in found["watchdog"]["detail"]
    assert found["shadow"]["ok"] and "this shadow (of node-a)" in found["shadow"]["detail"]


async def test_a_watchdog_with_a_shorter_takeover_delay_breaks_the_timing_rule() -> None:
    pair = Pair(lambda path: about(1_000_000.1) if "about" in path else {})
    feed = Feed(watchdogs=[watchdog(pair.clock, 1.0, interval=3.5)])
    timing = by_name(await preflight(pair, feed).run())["timing"]
    assert not timing["ok"] and "watchdog w1's delay" in timing["detail"]


async def test_the_about_answer_says_what_the_peer_needs() -> None:
    pair = Pair(lambda path: {})
    pair.role = "shadow"
    doc = await preflight(pair).about()
    assert doc == about(pair.clock.now, instance="node-a", lease=3.0, lease_margin=1.0)
