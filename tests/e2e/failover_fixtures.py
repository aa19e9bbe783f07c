"""Failover end to end: a master, its shadow and a watchdog as real processes, a write load that
follows the master, and the verdicts the failover tests share.

Every process runs with a heartbeat of 0.5 s and a takeover delay of 2 s (master lease 1.2 s),
so a failover completes in about two seconds and each test stays short. The load runs in a
thread with its own event loop, so a test may block (sleep, poll, signal processes) freely.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from tests.conftest import ADMIN_PASSWORD, AMQP_URL, delete_cluster_topology
from tests.e2e.conftest import Pair, Process, make_process
from tests.e2e.tcpproxy import TcpProxy

T = TypeVar("T")

TAKEOVER_DELAY = 2.0
HA_ENV = {
    "SHADOWLINE_HEARTBEAT_INTERVAL": "0.5",
    "SHADOWLINE_TAKEOVER_DELAY": str(TAKEOVER_DELAY),
}
NAMES = ("node-a", "node-b")  # node-a starts as the master

# -- polling -------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """The first truthy value of `predicate`, polled every `every` s; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def admin(process: Process, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD), timeout=timeout)


def health(process: Process) -> dict[str, Any] | None:
    """GET /health, or None while the process is down, paused or starting."""
    try:
        response = httpx.get(f"{process.url}/health", timeout=0.5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def is_role(process: Process, role: str, epoch: int | None = None) -> bool:
    found = health(process)
    return (
        found is not None and found["role"] == role and (epoch is None or found["epoch"] == epoch)
    )


def wait_role(process: Process, role: str, epoch: int | None, timeout: float) -> float:
    """Wait until /health shows `role` (in `epoch`); returns the monotonic time it was seen."""
    wait_for(
        lambda: is_role(process, role, epoch),
        timeout,
        f"{process.env['SHADOWLINE_INSTANCE']} to be {role} in epoch {epoch}",
        every=0.02,
    )
    return time.monotonic()


def events(process: Process) -> list[dict[str, Any]]:
    with admin(process, timeout=30) as client:
        response = client.get("/events", params={"limit": 1_000_000})
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


def promotions(process: Process) -> list[dict[str, Any]]:
    return [e for e in events(process) if e["type"] == "MasterPromoted"]


def name_of(process: Process) -> str:
    return process.env["SHADOWLINE_INSTANCE"]


# -- the watchdog --------------------------------------------------------------------------------


@dataclass
class Watchdog:
    """`shadowline watchdog --cluster C` as a real process; every start logs to the same file."""

    env: dict[str, str]
    log: Path
    cluster: str
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [
                    *(sys.executable, "-m", "shadowline", "watchdog"),
                    *("--cluster", self.cluster, "--name", f"watchdog-{self.starts}"),
                ],
                env=self.env,
                stdout=out,
                stderr=out,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_logged(self, words: str, timeout: float, after: int = 0) -> float:
        """Wait for a log line containing `words` past offset `after`; returns the time seen."""

        def seen() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"the watchdog exited:\n{self.text()[-3000:]}")
            return words in self.text()[after:]

        wait_for(seen, timeout, f"the watchdog to log {words!r}", every=0.01)
        return time.monotonic()

    def wait_watching(self, timeout: float = 30) -> None:
        self.wait_logged(f"[{self.cluster}] watching", timeout, after=self._start_offset())

    def _start_offset(self) -> int:
        marker = f"watchdog watchdog-{self.starts}:"
        text = self.text()
        return max(0, text.rfind(marker))

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# -- the cluster ---------------------------------------------------------------------------------


@dataclass
class HaCluster:
    pair: Pair
    watchdog: Watchdog
    proxy: TcpProxy | None = None  # between node-a and RabbitMQ, when asked for

    @property
    def cluster(self) -> str:
        return self.pair.cluster

    @property
    def master(self) -> Process:
        """The instance that started as the master (node-a)."""
        return self.pair.master

    @property
    def shadow(self) -> Process:
        """The instance that started as the shadow (node-b)."""
        return self.pair.shadow

    def set_up(self, *, watchdog: bool = True) -> None:
        """Master and shadow with HA confirmed, replication sync, and the watchdog watching."""
        self.pair.set_up()
        self.wait_sync(self.master)
        if watchdog:
            self.watchdog.start()
            self.watchdog.wait_watching()

    def wait_sync(self, master: Process, timeout: float = 30) -> None:
        def sync() -> bool:
            with admin(master) as client:
                return client.get("/ha").json().get("replication") == "sync"

        wait_for(sync, timeout, f"replication of {name_of(master)} to be sync", every=0.1)

    def resume_all(self) -> None:
        """SIGCONT everything a test may have paused, so teardown can stop it."""
        for process in (self.master, self.shadow):
            if process.popen is not None and process.popen.poll() is None:
                process.signal(signal.SIGCONT)


async def _ha_cluster(db_factory: Any, tmp_path: Path, *, proxy: bool) -> AsyncIterator[HaCluster]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    link = None
    env = dict(HA_ENV)
    if proxy:
        link = TcpProxy("127.0.0.1", 5672)
        link.start()
        env["SHADOWLINE_AMQP_URL"] = link.url_for(AMQP_URL)
    master = make_process(
        await db_factory(), tmp_path / "node-a.log", name=NAMES[0], cluster=cluster, **env
    )
    shadow = make_process(
        await db_factory(), tmp_path / "node-b.log", name=NAMES[1], cluster=cluster, **HA_ENV
    )
    watchdog_env = {
        **os.environ,
        **HA_ENV,
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_CLUSTER_SECRET": master.env["SHADOWLINE_CLUSTER_SECRET"],
        "SHADOWLINE_AMQP_URL": AMQP_URL,
    }
    ha = HaCluster(
        Pair(master, shadow, cluster), Watchdog(watchdog_env, tmp_path / "watchdog.log", cluster)
    )
    ha.proxy = link
    try:
        yield ha
    finally:
        ha.watchdog.stop()
        ha.resume_all()
        if link is not None:
            link.restore()
        for process in (shadow, master):
            process.stop()
        if link is not None:
            link.close()
        await delete_cluster_topology(cluster, list(NAMES))


@pytest.fixture
async def ha_cluster(db_factory, rabbitmq, tmp_path: Path) -> AsyncIterator[HaCluster]:
    """A cluster not yet started: call `set_up()`."""
    async for ha in _ha_cluster(db_factory, tmp_path, proxy=False):
        yield ha


@pytest.fixture
async def ha_cluster_behind_proxy(db_factory, rabbitmq, tmp_path: Path) -> AsyncIterator[HaCluster]:
    """Like `ha_cluster`, but node-a reaches RabbitMQ only through `cluster.proxy`."""
    async for ha in _ha_cluster(db_factory, tmp_path, proxy=True):
        yield ha


# -- a write load that follows the master --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged write, as the client saw it."""

    kind: str
    name: str
    version: int
    position: int
    epoch: int
    value: dict[str, Any]
    url: str
    sent: float  # monotonic
    received: float


@dataclass(frozen=True, slots=True)
class Answer:
    """Anything else: a refusal (503, with the master it names) or a transport error."""

    url: str
    status: int | None
    detail: str
    sent: float
    received: float


def mapping(name: str, n: int) -> dict[str, Any]:
    return {
        "virtual_host": f"{name}.{n}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1 + n % 65000,
        "protocol": "HTTPS",
    }


@dataclass
class WriteLoad:
    """Writers that follow the master: on a 503 naming a master they go there; on a 503 naming
    none, or when the instance does not answer, they try the next known instance."""

    urls: list[str]
    workers: int = 4
    timeout: float = 3.0
    follow: bool = True  # False: keep writing to urls[0] whatever it answers
    acks: list[Ack] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> WriteLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 10)

    def wait_acks(self, count: int, timeout: float, since: float = 0.0) -> None:
        wait_for(
            lambda: sum(1 for a in self.acks if a.sent >= since) >= count,
            timeout,
            f"{count} acknowledged writes",
        )

    async def _run(self) -> None:
        await asyncio.gather(*(self._writer(w) for w in range(self.workers)))

    def _other(self, url: str) -> str:
        return self.urls[(self.urls.index(url) + 1) % len(self.urls)] if url in self.urls else url

    async def _writer(self, worker: int) -> None:
        url, n = self.urls[0], 0
        async with httpx.AsyncClient(auth=("admin", ADMIN_PASSWORD), timeout=self.timeout) as http:
            while not self._stop.is_set():
                name, n = f"w{worker}-{n % 10}", n + 1
                value = mapping(name, n)
                sent = time.monotonic()
                try:
                    response = await http.put(f"{url}/config/system-mapping/{name}", json=value)
                except httpx.HTTPError as error:
                    self.answers.append(
                        Answer(url, None, error.__class__.__name__, sent, time.monotonic())
                    )
                    url = self._other(url) if self.follow else url
                    await asyncio.sleep(0.05)
                    continue
                received = time.monotonic()
                if response.status_code in (200, 201):
                    doc = response.json()
                    self.acks.append(
                        Ack(
                            doc["kind"],
                            doc["name"],
                            doc["version"],
                            doc["position"],
                            doc["epoch"],
                            value,
                            url,
                            sent,
                            received,
                        )
                    )
                    continue
                master = _master_named(response)
                self.answers.append(
                    Answer(url, response.status_code, response.text[:200], sent, received)
                )
                if self.follow:
                    url = master if master else self._other(url)
                await asyncio.sleep(0.05)


def _master_named(response: httpx.Response) -> str | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    master = doc.get("master") if isinstance(doc, dict) else None
    return str(master).rstrip("/") if master else None


# -- verdicts ------------------------------------------------------------------------------------


def assert_every_ack_is_on(process: Process, acks: list[Ack]) -> None:
    """Every acknowledged write is in `process`'s log at its position, with its value, and the
    item's current version there is at least the last acknowledged one."""
    log = events(process)
    by_position = {e["position"]: e for e in log}
    assert sorted(by_position) == list(range(1, len(log) + 1)), "positions are not gap-free"
    lost = []
    for ack in acks:
        event = by_position.get(ack.position)
        found = None if event is None else (event["kind"], event["name"], event["version"])
        if found != (ack.kind, ack.name, ack.version) or event["data"] != ack.value:
            lost.append(f"{ack} -> {event}")
    assert not lost, f"{len(lost)} acknowledged writes lost on {name_of(process)}:\n" + "\n".join(
        lost[:10]
    )
    latest: dict[str, Ack] = {}
    for ack in acks:
        if ack.name not in latest or ack.version > latest[ack.name].version:
            latest[ack.name] = ack
    with admin(process) as client:
        for name, ack in latest.items():
            item = client.get(f"/config/system-mapping/{name}").json()
            assert item["version"] >= ack.version, f"{name}: {item} older than {ack}"


def assert_single_promotion(process: Process) -> dict[str, Any]:
    found = promotions(process)
    assert len(found) == 1, f"{len(found)} MasterPromoted events on {name_of(process)}: {found}"
    return found[0]


def verify_agrees(shadow: Process, timeout: float = 15) -> dict[str, Any]:
    """`GET /ha/verify` on a shadow, once it has caught up with its master."""

    def agreed() -> dict[str, Any] | None:
        with admin(shadow) as client:
            response = client.get("/ha/verify")
        if response.status_code != 200:
            return None
        doc = response.json()
        return doc if doc["agree"] else None

    return wait_for(agreed, timeout, f"GET /ha/verify on {name_of(shadow)} to agree", every=0.2)


def longest_gap(acks: list[Ack], start: float, end: float) -> float:
    """The longest time between two consecutive acknowledgements within [start, end]."""
    moments = sorted([start, end, *(a.received for a in acks if start <= a.received <= end)])
    return max(b - a for a, b in itertools.pairwise(moments))
