"""A TCP proxy in front of the shared RabbitMQ, so one broker looks like several nodes that can
be lost one by one: `cut()` drops every connection through it and stops listening (a node
killed), `mute` accepts connections and forwards nothing (a node stopped or cut off),
`hold_replies()` stops forwarding what the broker sends (a confirm that never arrives), and
`freeze()` stops forwarding both ways with the connections left open (a frozen node)."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, target_port: int, *, mute: bool = False) -> None:
        self.target_port = target_port
        self.mute = mute
        self._replies = asyncio.Event()  # set: what the broker sends is forwarded
        self._replies.set()
        self._requests = asyncio.Event()  # set: what a client sends is forwarded
        self._requests.set()
        self._sent = asyncio.Event()  # set when bytes go from a client to the broker
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._port

    def url(self, credentials: str = "guest:guest") -> str:
        return f"amqp://{credentials}@127.0.0.1:{self.port}/"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mute:
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.add(up_writer)
        for task in (self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)):
            self._tasks.add(asyncio.create_task(task))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upward: bool
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if upward:
                    self._sent.set()
                    await self._requests.wait()
                else:
                    await self._replies.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    def hold_replies(self) -> None:
        """Forward nothing more from the broker; `sending()` waits for a client's next bytes."""
        self._replies.clear()
        self._sent.clear()

    def freeze(self) -> None:
        """Forward nothing either way with every connection left open: a node stopped by
        SIGSTOP, or behind a partition that drops its packets."""
        self._requests.clear()
        self._replies.clear()

    async def sending(self) -> None:
        await asyncio.wait_for(self._sent.wait(), 10)

    async def cut(self) -> None:
        """Stop listening and drop every connection at once (RST), as a killed node does."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()
        self._tasks.clear()
