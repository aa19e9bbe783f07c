"""Bounds on what one client can make the instance hold: connections, headers, bodies.

`BodyLimit`, a pure ASGI middleware, refuses request bodies over a size limit with 413. It
checks Content-Length up front and also counts streamed (chunked) bodies, so no request can make
the instance buffer more than the limit.

`guarded_protocol` bounds the HTTP server below the application (see its docstring): uvicorn on
its own keeps a connection that never sends a request forever and buffers a header line of any
size (httptools has no limit), and its `limit_concurrency` counts idle connections too, so a flood
of them would answer every real request, `/health` included, with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import Counter, OrderedDict
from typing import ClassVar

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from shadowline.entrypoints.errors import BodyTooLarge, refusal_of


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        # More digits than any limit has: refused before int(), which refuses 4,300 digits.
        if (
            declared is not None
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > self.max_bytes)
        ):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        refused = refusal_of(BodyTooLarge(f"request body larger than {self.max_bytes} bytes"))
        payload = orjson.dumps(refused.body)
        await send(
            {
                "type": "http.response.start",
                "status": refused.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


# -- the HTTP server -----------------------------------------------------------------------------


class HeadersTooLarge(Exception):
    """Raised inside the parser's callbacks when a request line and headers exceed the limit."""


class ConnectionGuard:
    """What the connections of one server share: the cap, and the idle ones, oldest first.

    A connection is idle while it waits for (the rest of) a request's headers: before its first
    request, between keep-alive requests, and while a slowloris drips bytes. When a new one would
    pass the cap, the oldest idle connection is closed to make room (the newcomer itself when all
    others are busy with requests), so a flood of idle connections can neither exhaust the file
    descriptors nor lock out a real client such as a load balancer asking `/health`.
    """

    def __init__(self, max_connections: int, max_header_bytes: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.idle: OrderedDict[GuardedHttpToolsProtocol, None] = OrderedDict()
        self.busy: set[GuardedHttpToolsProtocol] = set()
        self.closed = Counter[str]()  # why connections were closed: evicted, timeout, headers

    def admit(self, connection: GuardedHttpToolsProtocol) -> None:
        self.idle[connection] = None
        while len(self.idle) + len(self.busy) > self.max_connections and self.idle:
            oldest, _ = self.idle.popitem(last=False)
            self.closed["evicted"] += 1
            oldest.transport.abort()  # idle: nothing to flush; the descriptor goes at once

    def started(self, connection: GuardedHttpToolsProtocol) -> None:
        self.idle.pop(connection, None)
        self.busy.add(connection)

    def finished(self, connection: GuardedHttpToolsProtocol) -> None:
        self.busy.discard(connection)
        self.idle[connection] = None  # the newest idle one again

    def forget(self, connection: GuardedHttpToolsProtocol) -> None:
        self.idle.pop(connection, None)
        self.busy.discard(connection)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, a header size limit (431) and a
    header timeout. The timeout is a deadline, not an idle timer: dripping one byte a second
    does not extend it."""

    guard: ClassVar[ConnectionGuard]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0  # bytes received since the current request's headers began
        self._parsed_header_bytes = 0  # of them, what the parser has handed over
        self._too_large = False
        self._reading_headers = True
        self._deadline: asyncio.TimerHandle | None = None
        self._arm_deadline()
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._disarm_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Headers still incomplete after more than the limit: httptools would keep buffering
        # them (a 50 MiB header line was accepted), so at most the limit plus one read is held.
        if (
            self._reading_headers
            and self._header_bytes > self.guard.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse_headers()

    # Parser callbacks: the exact size of what was parsed, refused before the request starts.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._disarm_deadline()
        self.guard.started(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True  # what follows is the next request's

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: no request is running, so this one waits again.
        if self.timeout_keep_alive_task is not None and not self.transport.is_closing():
            self.guard.finished(self)
            self._arm_deadline()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any error raised in a parser callback with 400; ours is a 431.
        if self._too_large:
            self._refuse_headers()
        else:
            super().send_400_response(msg)

    # -- helpers --------------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._parsed_header_bytes += size
        if self._parsed_header_bytes > self.guard.max_header_bytes:
            self._too_large = True
            raise HeadersTooLarge

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._deadline = self.loop.call_later(self.guard.header_timeout, self._too_slow)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self in self.guard.idle and not self.transport.is_closing():
            self.guard.closed["timeout"] += 1
            self.transport.close()

    def _refuse_headers(self) -> None:
        self.guard.closed["headers"] += 1
        body = b"request header fields too large"
        self.transport.write(
            STATUS_LINE[431]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), bound to this server's guard."""
    return type("GuardedHttpTools", (GuardedHttpToolsProtocol,), {"guard": guard})


def descriptor_room(reserve: int = 128) -> int:
    """How many sockets the process's file-descriptor limit leaves room for, after raising the
    soft limit to the hard one; `reserve` keeps descriptors for the database pool, the broker,
    logs and the listening socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, soft - reserve)


def server_bounds(max_connections: int, room: int) -> tuple[int, int]:
    """(connection cap, listen backlog) that fit in `room` descriptors. The event loop accepts
    up to a backlog of connections before their protocols run (and so before the cap can close
    the oldest), so cap + backlog must fit, or a burst would still run out of descriptors."""
    backlog = max(8, min(2048, room // 4))
    return max(1, min(max_connections, room - backlog)), backlog
