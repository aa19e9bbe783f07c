"""The watchdog's health: GET /health's document and the health file, over every watch."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from shadowline.domain import watchdog as rules
from shadowline.watchdog.service import ClusterWatch


async def touch_health_file(path: str, watches: list[ClusterWatch]) -> None:
    """Touch `path` every second while every cluster's broker link is up (a health check)."""
    while True:
        if all(w.connected for w in watches):
            await asyncio.to_thread(Path(path).touch)
        await asyncio.sleep(1)


def health(name: str, watches: list[ClusterWatch], node: str | None = None) -> dict[str, Any]:
    """GET /health of the watchdog: ok while every cluster's broker link is up; `node` is the
    broker node (host:port) its link is on now, None while it is on none."""
    now, clusters = time.monotonic(), {}
    for watch in watches:
        master = rules.master_of(watch.view)
        clusters[watch.cluster] = {
            "connected": watch.connected,
            "phase": watch.view.phase,
            "maintenance": watch.view.maintenance,
            "master": master.instance if master else None,
            "master_heartbeat_age": now - master.seen if master else None,
            "epoch": max((m.epoch for m in watch.view.members.values()), default=None),
        }
    ok = all(c["connected"] for c in clusters.values())
    return {"watchdog": name, "ok": ok, "broker": {"node": node}, "clusters": clusters}
