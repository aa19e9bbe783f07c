"""Runs one watchdog process: its composition root (a broker link and a probe per watched
cluster, from the adapters), its HTTP server, signals and shutdown. It sits where runtime.py
does, above the adapters, so the watchdog package itself imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.peer import probe_health
from shadowline.settings import Settings
from shadowline.watchdog import http
from shadowline.watchdog.metrics import WatchdogMetrics
from shadowline.watchdog.service import ClusterWatch, health, touch_health_file

log = logging.getLogger("shadowline.watchdog")


def _watch(
    cluster: str,
    settings: Settings,
    name: str,
    allow_data_loss: bool,
    metrics: WatchdogMetrics,
) -> ClusterWatch:
    secret = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
    link = BrokerLink(
        settings.amqp_url.get_secret_value(),
        Names(cluster),
        f"shadowline {name}",
        declare=("monitoring", "commands"),
        secret=secret,
    )
    probe = partial(
        _probe,
        secret=secret or "",
        caller=name,
        cluster=cluster,
        within=max(0.2, settings.takeover_delay / 4),
    )
    return ClusterWatch(cluster, settings, name, allow_data_loss, metrics, link=link, probe=probe)


async def _probe(
    url: str,
    instance: str,
    on_rejected: Callable[[str], None],
    *,
    secret: str,
    caller: str,
    cluster: str,
    within: float,
) -> tuple[dict[str, Any] | None, str]:
    return await probe_health(
        url,
        secret=secret,
        caller=caller,
        cluster=cluster,
        instance=instance,  # a genuine instance elsewhere (another cluster) is not it
        within=within,
        on_rejected=on_rejected,
    )


async def run_watchdog(
    settings: Settings,
    clusters: list[str],
    name: str,
    allow_data_loss: bool,
    health_file: str | None = None,
) -> None:
    watches: list[ClusterWatch] = []
    metrics = WatchdogMetrics(
        clusters, lambda: [w.seen() for w in watches], settings.takeover_delay
    )
    watches += [_watch(c, settings, name, allow_data_loss, metrics) for c in clusters]
    bind = settings.watchdog_http_bind
    sock = http.listen(bind) if bind else None  # a port in use fails here, before any work
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(w.run()) for w in watches]
    if health_file:
        tasks.append(asyncio.create_task(touch_health_file(health_file, watches)))
    server = None
    if sock is not None:
        server = http.server(http.create_app(metrics, lambda: health(name, watches)))
        tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        host, port = sock.getsockname()[:2]
        log.info("serving /health and /metrics on %s:%d", host, port)
    await stop.wait()
    if server is not None:  # let a scrape in flight finish; the rest is cancelled below
        server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(tasks[-1]), 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for watch in watches:
        await watch.close()
    log.info("watchdog stopped")
