"""A master and its shadow as real processes on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import Pair


def _wait(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _mapping(n: int) -> dict[str, Any]:
    return {
        "virtual_host": f"v{n}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1 + n,
        "protocol": "HTTPS",
    }


def test_a_confirmed_shadow_receives_the_snapshot_and_every_later_change(pair: Pair) -> None:
    pair.master.start()
    pair.master.wait_healthy()
    with pair.admin(pair.master) as master:
        for n in range(20):  # before HA: reaches the shadow through the image
            assert master.put(f"/config/system-mapping/m{n}", json=_mapping(n)).status_code == 201
    pair.shadow.start()
    pair.shadow.wait_healthy()
    with pair.admin(pair.master) as master, pair.admin(pair.shadow) as shadow:
        assert master.post("/ha/enable").status_code == 200
        joined = shadow.post(
            "/ha/join",
            json={"master_url": pair.master.url, "user": "admin", "password": ADMIN_PASSWORD},
        )
        assert joined.status_code == 200, joined.text
        assert master.get("/ha").json()["shadow"]["state"] == "pending"
        assert master.post("/ha/confirm").status_code == 200
        for n in range(20, 40):
            master.put(f"/config/system-mapping/m{n}", json=_mapping(n))
        master.delete("/config/system-mapping/m3")
        head = master.get("/health").json()["position"]
        _wait(
            lambda: shadow.get("/health").json()["position"] == head, what="the shadow to catch up"
        )
        assert shadow.get("/config").json()["items"] == master.get("/config").json()["items"]
        verify = shadow.get("/ha/verify").json()
        assert verify["agree"], verify
        # The shadow is read-only and names its master.
        refused = shadow.put("/config/system-mapping/x", json=_mapping(1))
        assert refused.status_code == 503 and refused.json()["master"] == pair.master.url
        _wait(lambda: httpx.get(f"{pair.shadow.url}/shadow").status_code == 200, what="/shadow 200")
        assert httpx.get(f"{pair.shadow.url}/master").status_code == 503
        _wait(lambda: master.get("/ha").json()["shadow"]["state"] == "connected", what="connected")
        # Its history becomes complete too (backfilled below the image).
        _wait(
            lambda: (
                len(shadow.get("/events", params={"limit": 10000}).content.splitlines()) == head
            ),
            what="the history backfill",
        )
        assert (
            shadow.get("/events", params={"limit": 10000}).content
            == master.get("/events", params={"limit": 10000}).content
        )
