"""Runs one watchdog process: its composition root (one shared broker link for every watched
cluster and a probe per cluster, from the adapters), its HTTP server, signals and shutdown. It
sits where runtime.py does, above the adapters, so the watchdog package itself imports none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import stat
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from shadowline.adapters.peer import probe_health
from shadowline.adapters.tls import client_context
from shadowline.adapters.watchdog_link import SharedLink, start_until_connected
from shadowline.settings import Settings
from shadowline.watchdog import http
from shadowline.watchdog.health import health, touch_health_file
from shadowline.watchdog.metrics import WatchdogMetrics
from shadowline.watchdog.service import ClusterWatch

log = logging.getLogger("shadowline.watchdog")


def read_secrets(path: str) -> dict[str, str]:
    """A secrets file: one JSON object, cluster name -> that cluster's secret. Raises ValueError
    with a sentence when it is not one (never quoting a secret)."""
    file = Path(path)
    try:
        doc = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise ValueError(f"cannot read the secrets file {path}: {error}") from error
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in doc.items()
    ):
        raise ValueError(f"{path}: expected a JSON object of cluster name -> non-empty secret")
    if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the secrets file %s is readable by others than its owner (chmod 600)", path)
    return dict(doc)


def _watch(
    link: SharedLink,
    cluster: str,
    secret: str | None,
    settings: Settings,
    name: str,
    allow_data_loss: bool,
    metrics: WatchdogMetrics,
) -> ClusterWatch:
    probe = partial(
        _probe,
        secret=secret or "",
        caller=name,
        cluster=cluster,
        within=max(0.2, settings.takeover_delay / 4),
        verify=client_context(settings.ca_file),
    )
    watch: ClusterWatch

    def on_heartbeat(key: str, beat: dict[str, Any] | None, refusal: str | None) -> None:
        watch.on_heartbeat(key, beat, refusal)

    def on_announcement(doc: dict[str, Any] | None, refusal: str | None, delay: float) -> None:
        watch.on_announcement(doc, refusal, delay)

    cluster_link = link.add(cluster, secret, on_heartbeat, on_announcement)
    watch = ClusterWatch(
        cluster,
        settings,
        name,
        allow_data_loss,
        metrics,
        link=cluster_link,
        probe=probe,
        secret=secret,
    )
    return watch


async def _probe(
    url: str,
    instance: str,
    on_rejected: Callable[[str], None],
    *,
    secret: str,
    caller: str,
    cluster: str,
    within: float,
    verify: ssl.SSLContext,
) -> tuple[dict[str, Any] | None, str]:
    return await probe_health(
        url,
        secret=secret,
        caller=caller,
        cluster=cluster,
        instance=instance,  # a genuine instance elsewhere (another cluster) is not it
        within=within,
        on_rejected=on_rejected,
        verify=verify,
    )


async def _watching(link: SharedLink, watches: list[ClusterWatch], stop: asyncio.Event) -> None:
    if await start_until_connected(link, stop):
        for watch in watches:
            watch.begin()


# Long only because it starts and stops every part of the process in one place, in order.
async def run_watchdog(
    settings: Settings,
    clusters: list[str],
    name: str,
    allow_data_loss: bool,
    health_file: str | None = None,
    secrets: Mapping[str, str] | None = None,
) -> None:
    """`secrets`: per-cluster secrets (a secrets file); the others use SHADOWLINE_CLUSTER_SECRET."""
    default = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
    watches: list[ClusterWatch] = []
    metrics = WatchdogMetrics(
        clusters, lambda: [w.seen() for w in watches], settings.takeover_delay
    )
    link = SharedLink(
        settings.amqp_url.get_secret_value(), f"shadowline {name} (pid {os.getpid()})", name
    )
    watches += [
        _watch(link, c, (secrets or {}).get(c, default), settings, name, allow_data_loss, metrics)
        for c in clusters
    ]
    bind = settings.watchdog_http_bind
    sock = http.listen(bind) if bind else None  # a port in use fails here, before any work
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [asyncio.create_task(_watching(link, watches, stop))]
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
        watch.close()
    await link.close()
    log.info("watchdog stopped")
