"""A master and its shadow, and a watchdog, set up as an operator does it: through the public
HTTP API (enable HA on the master, join on the shadow, confirm on the master).

The roles are those of now: `swap` after a failover or a switch of roles, so that `master` is
always the instance that takes writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from shadowline.harness.processes import (
    HarnessError,
    InstanceProcess,
    TimedOut,
    WatchdogProcess,
    stop_all,
    wait_for,
)


def admin(process: InstanceProcess, password: str, timeout: float = 30) -> httpx.Client:
    """A client of `process` logged in as admin (each instance has its own users)."""
    return httpx.Client(
        base_url=process.url, auth=("admin", password), timeout=timeout, verify=process.verify
    )


def call(process: InstanceProcess, password: str, method: str, path: str, body: Any = None) -> Any:
    """One request as admin; its JSON answer, or HarnessError naming the refusal."""
    with admin(process, password) as client:
        response = client.request(method, path, json=body)
    if response.status_code >= 400:
        raise HarnessError(
            f"{method} {path} on {process.name}: {response.status_code} {response.text}"
        )
    return response.json()


def start_all(processes: Iterable[InstanceProcess], timeout: float = 60) -> None:
    """Start them all, then wait for each to be healthy (they start side by side)."""
    started = list(processes)
    for process in started:
        process.start()
    for process in started:
        process.wait_healthy(timeout)


def enable_and_join(
    master: InstanceProcess, shadow: InstanceProcess, password: str, auto_confirm: bool = False
) -> None:
    """Enable HA on the master and join the shadow to it: the shadow is pending (unless the
    master confirms it by itself)."""
    call(master, password, "POST", "/ha/enable", {"auto_confirm": auto_confirm})
    join = {"master_url": master.url, "user": "admin", "password": password}
    call(shadow, password, "POST", "/ha/join", join)


def confirm(master: InstanceProcess, shadow: InstanceProcess, password: str) -> None:
    """Confirm the pending shadow on the master: the master starts sending it its history."""
    call(master, password, "POST", "/ha/confirm", {"shadow": shadow.name})


def set_up_ha(
    master: InstanceProcess, shadow: InstanceProcess, password: str, auto_confirm: bool = False
) -> None:
    """Enable HA on the master, join the shadow to it, confirm the shadow on the master."""
    enable_and_join(master, shadow, password, auto_confirm)
    if not auto_confirm:
        confirm(master, shadow, password)


def ha(process: InstanceProcess, password: str, timeout: float = 2) -> dict[str, Any] | None:
    """GET /ha, or None while the instance does not answer it."""
    try:
        with admin(process, password, timeout) as client:
            doc = client.get("/ha").json()
    except (httpx.HTTPError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def connected(master: InstanceProcess, shadow: InstanceProcess, password: str) -> bool:
    """The master's GET /ha names `shadow` as its shadow, connected."""
    found = (ha(master, password) or {}).get("shadow") or {}
    return found.get("instance") == shadow.name and found.get("state") == "connected"


def in_sync(master: InstanceProcess, shadow: InstanceProcess, password: str) -> bool:
    """`master` is master, `shadow` its connected shadow, and replication is sync."""
    doc = ha(master, password) or {}
    found = doc.get("shadow") or {}
    return (
        doc.get("role") == "master"
        and doc.get("replication") == "sync"
        and found.get("instance") == shadow.name
        and found.get("state") == "connected"
    )


def is_role(process: InstanceProcess, role: str, epoch: int | None = None) -> bool:
    found = process.health()
    return found is not None and found["role"] == role and epoch in (None, found["epoch"])


def wait_role(process: InstanceProcess, role: str, epoch: int | None, timeout: float) -> float:
    """Wait until /health shows `role` (in `epoch`); the monotonic time it was seen."""
    what = f"{process.name} to be {role} in epoch {epoch}"
    wait_for(lambda: is_role(process, role, epoch), timeout, what, every=0.02)
    return time.monotonic()


@dataclass
class HaCluster:
    """A master, its shadow and (optionally) a watchdog of one cluster, as processes."""

    cluster: str
    password: str
    master: InstanceProcess
    shadow: InstanceProcess
    watchdog: WatchdogProcess | None = None

    @property
    def nodes(self) -> tuple[InstanceProcess, InstanceProcess]:
        return self.master, self.shadow

    def swap(self) -> None:
        self.master, self.shadow = self.shadow, self.master

    def set_up(self, timeout: float = 60) -> None:
        """Both instances started and healthy, HA confirmed, the shadow connected."""
        start_all(self.nodes, timeout)
        set_up_ha(self.master, self.shadow, self.password)
        wait_for(
            lambda: connected(self.master, self.shadow, self.password),
            timeout,
            f"{self.shadow.name} to be connected to {self.master.name}",
            every=0.1,
        )

    def wait_in_sync(self, timeout: float = 30) -> float:
        """Seconds until `in_sync`; HarnessError if an instance exits or the time runs out."""
        begun = time.monotonic()

        def synced() -> bool:
            for node in self.nodes:
                node.check_running()
            return in_sync(self.master, self.shadow, self.password)

        try:
            wait_for(synced, timeout, "sync", every=0.1)
        except TimedOut:
            docs = {node.name: ha(node, self.password) for node in self.nodes}
            raise HarnessError(
                f"{self.shadow.name} not connected and sync to {self.master.name} within "
                f"{timeout:.0f}s; GET /ha: {docs} (logs: {self.master.log.parent})"
            ) from None
        return time.monotonic() - begun

    def start_watchdog(self, timeout: float = 60) -> None:
        assert self.watchdog is not None, "this cluster has no watchdog"
        self.watchdog.start()
        self.watchdog.wait_watching(timeout)

    def restart(self, node: InstanceProcess, timeout: float = 90) -> None:
        """Start a killed instance again on its own database (it finds the newer epoch)."""
        if node.popen is not None:
            node.wait()
        node.start()
        node.wait_healthy(timeout)

    def stop(self) -> list[str]:
        """The watchdog first (no promotion during the shutdown), then both instances, by
        SIGTERM; what did not exit with 0, as sentences."""
        problems = []
        if self.watchdog is not None and self.watchdog.running:
            code = self.watchdog.stop(timeout=15)
            if code != 0:
                problems.append(f"the watchdog exited with code {code} (log: {self.watchdog.log})")
        running = [node for node in self.nodes if node.running]
        for node, code in zip(running, stop_all(running), strict=True):
            if code != 0:
                problems.append(
                    f"{node.name} exited with code {code} after SIGTERM (log: {node.log})"
                )
        return problems
