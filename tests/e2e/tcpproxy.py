"""A small fault-injecting TCP proxy on loopback, for cutting one process off from a server.

It forwards every connection made to its port to an upstream address, from an asyncio loop of
its own in a daemon thread, so that a test (sync or async) can cut and restore the link at any
moment without blocking anything:

- `cut("reset")`: every open connection is aborted (the client sees a reset at once) and new
  ones are accepted and aborted at once, as when the peer's host refuses connections;
- `cut("blackhole")`: connections stay open but nothing goes through in either direction, as
  in a network partition where packets are dropped (the client only notices by its timeouts);
- `restore()`: new connections go through again; connections that were blackholed are aborted,
  since an AMQP stream that lost bytes in the middle cannot be resumed anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field

MODES = ("reset", "blackhole")


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcpproxy")
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()
        self.mode: str | None = None  # None: forwarding
        self.port = 0
        self.accepted = 0

    # -- control, from any thread ------------------------------------------------------------

    def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._thread.start()
        self._call(self._listen())
        return self.port

    def url_for(self, url: str) -> str:
        """`url` (e.g. an AMQP URL naming the upstream) with its port replaced by the proxy's."""
        host, port = self._upstream
        return url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}")

    def cut(self, mode: str = "reset") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def _call(self, work: Coroutine[object, object, object]) -> None:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        future.result(timeout=10)

    # -- in the proxy's loop -----------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _cut(self, mode: str) -> None:
        self.mode = mode
        if mode == "reset":
            for link in list(self._links):
                link.abort()
            self._links.clear()

    async def _restore(self) -> None:
        if self.mode == "blackhole":
            for link in list(self._links):
                link.abort()
            self._links.clear()
        self.mode = None

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "reset":
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        if self.mode == "blackhole":  # held open, never connected upstream
            link.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await reader.read()  # until the client gives up
            link.abort()
            self._links.discard(link)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            link.abort()
            self._links.discard(link)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, link)),
            asyncio.create_task(self._pipe(up_reader, writer, link)),
        ]

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue  # dropped on the floor, as by a partition
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            link.abort()
            self._links.discard(link)
