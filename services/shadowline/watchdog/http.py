"""The watchdog's own small HTTP server: `GET /health` and `GET /metrics`, nothing else.

It is off unless a bind address is given (`--http-bind` or SHADOWLINE_WATCHDOG_HTTP_BIND): the
watchdog keeps no state, so several may run on one host, and a fixed default port would make
the second one fail. Neither path needs auth: the watchdog has no users, and neither exposes a
secret (cluster and instance names, phases, counters); bind it to a private address.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shadowline.watchdog.metrics import WatchdogMetrics

log = logging.getLogger("shadowline.watchdog")


def create_app(metrics: WatchdogMetrics, health: Callable[[], dict[str, Any]]) -> Starlette:
    """`health()` returns the document of GET /health; its `ok` decides 200 or 503."""

    async def get_health(_: Request) -> JSONResponse:
        doc = health()
        return JSONResponse(doc, status_code=200 if doc["ok"] else 503)

    async def get_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/health", get_health), Route("/metrics", get_metrics)],
    )


def listen(bind: str) -> socket.socket:
    """Bind HOST:PORT now, so that a port in use is a clear start-up error (OSError)."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot serve HTTP on {bind}: {error.strerror or error}") from error
    return sock


class Server(uvicorn.Server):
    """The watchdog handles SIGTERM itself (and then sets `should_exit`); uvicorn would re-raise
    the signal once its own shutdown is done and end the process before the watches close."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server(app: Starlette) -> Server:
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    return Server(config)
