"""A write load for the failover tests: writers that follow the master through a failover, and
what each of their requests was answered (an acknowledgement, a refusal, a transport error).

It runs in a thread with its own event loop, so a test may block (sleep, poll, signal
processes) freely while it writes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from shadowline.harness import wait_for
from tests.conftest import ADMIN_PASSWORD


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
