"""The client given both instances' URLs (as SHADOWLINE_URL=a,b) writes through a failover and
a switch of roles without its caller noticing: every write it acknowledged is on the last
master, none is there twice, and no call failed (issue 13's "done when")."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from typing import Any

from shadowline.client import Client
from tests.conftest import ADMIN_PASSWORD
from tests.e2e import failover_fixtures
from tests.e2e.failover_fixtures import (
    Ack,
    HaCluster,
    assert_every_ack_is_on,
    events,
    mapping,
    wait_for,
    wait_role,
)

ha_cluster = failover_fixtures.ha_cluster


class Writer:
    """One caller writing new items one after the other through one client of both URLs."""

    def __init__(self, urls: str) -> None:
        self.client = Client(urls, "admin", ADMIN_PASSWORD, timeout=3, patience=30)
        self.acks: list[Ack] = []
        self.failed: list[tuple[str, str]] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            name, value = f"w{n}", mapping(f"w{n}", n)
            sent = time.monotonic()
            try:
                written = self.client.put("system-mapping", name, value)
            except Exception as error:  # every failure is the test's business
                self.failed.append((name, repr(error)))
                continue
            received = time.monotonic()
            self.slowest = max(self.slowest, received - sent)
            assert written["position"] is not None
            self.acks.append(
                Ack(
                    "system-mapping",
                    name,
                    written["version"],
                    written["position"],
                    written["epoch"],
                    value,
                    "",
                    sent,
                    received,
                )
            )

    def wait_acks(self, more: int, timeout: float) -> None:
        wanted = len(self.acks) + more
        wait_for(lambda: len(self.acks) >= wanted, timeout, f"{wanted} acknowledged writes")

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=40)
        self.client.close()


def test_a_client_of_both_urls_writes_through_a_failover_and_a_switch_with_nothing_lost_or_doubled(
    ha_cluster: HaCluster,
) -> None:
    old, new = ha_cluster.master, ha_cluster.shadow
    ha_cluster.set_up()
    with Writer(f"{old.url},{new.url}") as writer:
        writer.wait_acks(30, timeout=20)
        old.signal(signal.SIGKILL)
        killed = time.monotonic()
        promoted = wait_role(new, "master", 2, timeout=15)
        writer.wait_acks(30, timeout=20)
        print(f"\nkill -9 -> {new.url} master in {promoted - killed:.2f}s")
        old.wait()
        old.start()
        wait_role(old, "shadow", 2, timeout=20)
        ha_cluster.wait_sync(new)
        writer.wait_acks(10, timeout=20)
        switched = writer.client.ha_switch_roles()  # sent to whichever is master: the new one
        print(f"switch roles through the client: {switched}")
        wait_role(old, "master", 3, timeout=20)
        writer.wait_acks(30, timeout=20)
    print(
        f"{len(writer.acks)} writes acknowledged, {len(writer.failed)} failed; "
        f"slowest call {writer.slowest:.2f}s (the ones that followed the master)"
    )
    assert writer.failed == [], writer.failed[:5]
    assert {a.epoch for a in writer.acks} == {1, 2, 3}
    ha_cluster.wait_sync(old)
    assert_every_ack_is_on(old, writer.acks)
    puts = Counter(e["name"] for e in events(old) if e["type"] == "ConfigPut")
    doubled = {name: n for name, n in puts.items() if n > 1}
    assert doubled == {}, f"written twice: {doubled}"
