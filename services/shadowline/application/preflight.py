"""Would a failover succeed now? What GET /ha/preflight observes, judged by domain.preflight.

Every instance answers from its own side: a master judges its shadow, a shadow its master (its
role check says so). What it uses, and how each is known:

- the pair's replication: GET /ha's own fields (HaService.status), the shadow's lag in seconds
  from the shadow itself (its signed answer of GET /ha/peer/about);
- the watchdogs: their last authenticated word on monitoring, as the HA screen's feed keeps it;
- the timing rule: each instance's lease (ours from the settings, the peer's from its signed
  answer) against each takeover delay (ours, the peer's, every live watchdog's announcement
  interval, which is its takeover delay);
- the clocks: the peer's by its signed answer's time against the middle of the call (error at
  most half the round trip), or, when that fails, by its last heartbeat's `sent_at` against
  when it arrived here; each watchdog's by its last word's `at` against when it arrived (transit
  included in the estimate: milliseconds through the broker);
- version and schema revision: ours against the peer's signed answer;
- the broker: a connection to every node listed (adapters.node_probe);
- the peer's HTTP: PROBES signed GET /health calls, each on a new connection, bounded by the
  timeouts every instance-to-instance call has (ports.ha.PEER_TIMEOUT); after one times out
  the rest are not sent, so a peer that swallows packets costs one timeout, not PROBES.

Nothing a peer or the broker said counts unless it was authenticated with the cluster's keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shadowline import __version__
from shadowline.application.ports.ha import PEER_DEADLINE_FACTOR, PEER_TIMEOUT
from shadowline.application.ports.peer import Peer
from shadowline.domain import preflight as rules
from shadowline.domain import preflight_reach as reach
from shadowline.domain.errors import ShadowlineError
from shadowline.domain.events import parse_time
from shadowline.domain.ha import HaRecord
from shadowline.settings import Settings

PROBES = 5
_NUMBERS = ("time", "lease", "lease_margin", "takeover_delay", "heartbeat_interval")


class Pair(Protocol):
    """What the preflight needs of the HA service (application.ha.HaService)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def record(self) -> HaRecord | None: ...

    async def status(self) -> dict[str, Any]: ...

    def peer(
        self, url: str, instance: str | None = None, timeout: float = PEER_TIMEOUT
    ) -> Peer: ...


class Hearing(Protocol):
    """What the HA screen's feed kept of monitoring (entrypoints.amqp.feed.MonitoringFeed): its
    `Heard`s have `received_at` (an aware datetime), `routing_key` and `body`."""

    def latest_heartbeats(self) -> Sequence[Any]: ...

    def watchdogs_seen(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class _Answered:
    """The peer's signed answer of GET /ha/peer/about, between our clock's `sent` and `got`."""

    doc: dict[str, Any]
    sent: float
    got: float


def _timed_out(error: BaseException) -> bool:
    cause = error.__cause__
    return (cause is not None and "Timeout" in type(cause).__name__) or isinstance(
        cause, TimeoutError
    )


def _about_valid(doc: Any) -> bool:
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
        return False
    numbers = (doc.get(k) for k in _NUMBERS)
    return all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)


REUSE_FOR = 2.0  # seconds a finished run's answer stands for the next callers


class Preflight:
    def __init__(
        self,
        *,
        ha: Pair,
        feed: Hearing | None,
        nodes: Callable[[], Awaitable[list[reach.NodeAnswer]]],
        revision: Callable[[], Awaitable[str | None]],
        probes: int = PROBES,
        wall: Callable[[], float] = time.time,
        tick: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ha, self._feed, self._nodes, self._revision = ha, feed, nodes, revision
        self._count, self._wall, self._tick = probes, wall, tick
        self._running: asyncio.Task[dict[str, Any]] | None = None
        self._ended_at = -REUSE_FOR

    async def run(self) -> dict[str, Any]:
        """GET /ha/preflight. One run at a time, shared, its answer reused for REUSE_FOR s: a
        run calls the peer and every broker node, which a viewer's loop must not multiply."""
        if (answer := self._reusable()) is not None:
            return answer
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
            self._running.add_done_callback(self._ended)
        return await asyncio.shield(self._running)

    def _ended(self, _: asyncio.Task[dict[str, Any]]) -> None:
        self._ended_at = self._tick()

    def _reusable(self) -> dict[str, Any] | None:
        run = self._running
        if run is None or not run.done() or run.cancelled() or run.exception() is not None:
            return None
        return run.result() if self._tick() - self._ended_at < REUSE_FOR else None

    async def about(self) -> dict[str, Any]:
        """GET /ha/peer/about: what the peer's preflight needs of this instance."""
        status, settings = await self._ha.status(), self._ha.settings
        lag = status.get("lag") or {}
        return {
            "instance": settings.instance,
            "role": status["role"],
            "epoch": status["epoch"],
            "version": __version__,
            "revision": await self._revision(),
            "lease": settings.lease,
            "lease_margin": settings.lease_margin,
            "takeover_delay": settings.takeover_delay,
            "heartbeat_interval": settings.heartbeat_interval,
            "lag_events": lag.get("events"),
            "lag_seconds": lag.get("seconds"),
            "time": self._wall(),
        }

    async def _run(self) -> dict[str, Any]:
        status = await self._ha.status()
        record = self._ha.record
        peer, url = record.peer() if record is not None else (None, None)
        (answered, probes), nodes, revision = await asyncio.gather(
            self._probe(peer, url), self._nodes(), self._revision()
        )
        about = answered.doc if answered is not None else None
        watchdogs = self._watchdogs()
        on_master = status["role"] in ("master", "fenced")
        checks = [
            rules.role_check(status["role"], status["epoch"], peer, url),
            rules.shadow_check(
                rules.sync_of(status, about.get("lag_seconds") if about else None),
                self._ha.settings.takeover_delay,
            ),
            rules.watchdog_check(
                watchdogs, self._maintenance(status, peer), self._ha.settings.takeover_delay
            ),
            self._timing(peer, about, watchdogs),
            reach.clock_check(self._offsets(peer, answered, watchdogs)),
            reach.version_check(
                on_master,
                (__version__, revision),
                (about["version"], about.get("revision")) if about else None,
            ),
            reach.broker_check(nodes),
            reach.probe_check(
                peer, probes, self._count, PEER_TIMEOUT, PEER_DEADLINE_FACTOR * PEER_TIMEOUT
            ),
        ]
        return rules.verdict(checks)

    # -- the peer ------------------------------------------------------------------------------

    async def _probe(
        self, peer: str | None, url: str | None
    ) -> tuple[_Answered | None, list[reach.Probe]]:
        if peer is None or url is None or self._ha.settings.cluster_secret is None:
            return None, []
        answered, first = await self._about_of(peer, url)
        probes: list[reach.Probe] = []
        if first.timed_out:
            return answered, probes
        for _ in range(self._count):
            probes.append(await self._call(peer, url, "/health"))
            if probes[-1].timed_out:
                break
        return answered, probes

    async def _about_of(self, peer: str, url: str) -> tuple[_Answered | None, reach.Probe]:
        sent = self._wall()
        found: list[Any] = []
        probe = await self._call(peer, url, "/ha/peer/about", found)
        if probe.seconds is None or not _about_valid(found[0]):
            return None, probe
        return _Answered(found[0], sent, self._wall()), probe

    async def _call(
        self, peer: str, url: str, path: str, found: list[Any] | None = None
    ) -> reach.Probe:
        """One signed call on a connection of its own: its latency, or why it failed."""
        client = self._ha.peer(url, peer, timeout=PEER_TIMEOUT)
        started = self._tick()
        try:
            answer = await client.call("GET", path)
        except ShadowlineError as error:
            return reach.Probe(None, f"{type(error).__name__}: {error}", _timed_out(error))
        finally:
            await client.close()
        if found is not None:
            found.append(answer)
        return reach.Probe(self._tick() - started)

    # -- what monitoring said ------------------------------------------------------------------

    def _watchdogs(self) -> list[rules.WatchdogSeen]:
        now, seen = self._wall(), self._feed.watchdogs_seen() if self._feed else []
        found = []
        for heard in seen:
            body, interval = heard.body, heard.body.get("interval")
            found.append(
                rules.WatchdogSeen(
                    name=str(body.get("watchdog")),
                    age=max(0.0, now - heard.received_at.timestamp()),
                    interval=float(interval) if isinstance(interval, int | float) else None,
                    maintenance=body.get("maintenance") is True,
                    phase=str(body.get("phase") or heard.routing_key.removeprefix("failover.")),
                )
            )
        return found

    def _heartbeat_of(self, instance: str | None) -> Any:
        beats = self._feed.latest_heartbeats() if self._feed else []
        return next((b for b in beats if b.body.get("instance") == instance), None)

    def _maintenance(self, status: dict[str, Any], peer: str | None) -> bool:
        """The master's flag: ours on a master, its last heartbeat's on a shadow."""
        if status["role"] != "shadow":
            return bool(status.get("maintenance"))
        beat = self._heartbeat_of(peer)
        return beat is not None and beat.body.get("maintenance") is True

    def _timing(
        self, peer: str | None, about: dict[str, Any] | None, watchdogs: list[rules.WatchdogSeen]
    ) -> rules.Check:
        settings = self._ha.settings
        leases = [(settings.instance, settings.lease, settings.lease_margin)]
        delays = [(settings.instance, settings.takeover_delay)]
        if about is not None and peer is not None:
            leases.append((peer, float(about["lease"]), float(about["lease_margin"])))
            delays.append((peer, float(about["takeover_delay"])))
        delays += [
            (f"watchdog {w.name}", w.interval)
            for w in watchdogs
            if w.interval is not None and rules.live(w, settings.takeover_delay)
        ]
        return rules.timing_check(leases, delays)

    def _offsets(
        self, peer: str | None, answered: _Answered | None, watchdogs: list[rules.WatchdogSeen]
    ) -> list[reach.Offset]:
        found = [] if peer is None else [self._peer_offset(peer, answered)]
        alive = {w.name for w in watchdogs if rules.live(w, self._ha.settings.takeover_delay)}
        seen = self._feed.watchdogs_seen() if self._feed else []
        for heard in seen:
            name, at = str(heard.body.get("watchdog")), heard.body.get("at")
            if name in alive and isinstance(at, int | float):
                offset = float(at) - heard.received_at.timestamp()
                found.append(reach.Offset(f"watchdog {name}", offset, "its last word's time"))
        if not alive:
            found.append(reach.Offset("the watchdogs", None, "none heard lately"))
        return found

    def _peer_offset(self, peer: str, answered: _Answered | None) -> reach.Offset:
        if answered is not None:
            middle = (answered.sent + answered.got) / 2
            error = (answered.got - answered.sent) / 2
            how = f"signed call, ±{error * 1000:.1f} ms"
            return reach.Offset(peer, float(answered.doc["time"]) - middle, how)
        beat = self._heartbeat_of(peer)
        if beat is None:
            return reach.Offset(peer, None, "no signed answer, no heartbeat heard")
        try:
            sent = parse_time(str(beat.body.get("sent_at"))).timestamp()
        except ValueError:
            return reach.Offset(peer, None, "its heartbeat's time unreadable")
        return reach.Offset(peer, sent - beat.received_at.timestamp(), "its last heartbeat")
