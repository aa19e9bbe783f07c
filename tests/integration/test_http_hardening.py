"""The holes an attacker found in the HTTP side of an instance (issue 9), each closed.

Server limits run a real uvicorn server (built as `shadowline instance` builds it) on a free
loopback port, or a real `shadowline instance` process; the rest go through ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shadowline.bootstrap import Instance
from shadowline.instance.main import http_config, http_server
from tests.conftest import started

# -- a real HTTP server ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(inst: Instance) -> AsyncIterator[tuple[str, int]]:
    """The instance's ASGI app served by uvicorn as `serve` configures it, on a free port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = http_server(http_config(inst.settings, inst.asgi))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@pytest.fixture
async def idle_connections() -> AsyncIterator[Any]:
    """Opens `count` connections that send nothing; all closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def open_idle(host: str, port: int, count: int) -> list[asyncio.StreamReader]:
        readers = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, port)
            readers.append(reader)
            writers.append(writer)
        return readers

    yield open_idle
    for writer in writers:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ended the connection (EOF or reset) within `within` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def health(host: str, port: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
        return await client.get("/health")


async def test_health_stays_reachable_with_hundreds_of_idle_connections_over_the_cap(
    db_url, idle_connections
):
    settings = {"http_max_connections": 50, "http_header_timeout": 30}
    async with started(db_url, **settings) as inst, serving(inst) as (host, port):
        readers = await idle_connections(host, port, 300)
        await asyncio.sleep(0.3)  # let the server accept them all
        answer = await health(host, port)
        closed = await asyncio.gather(*(closed_by_server(r, 2) for r in readers[:250]))

    assert answer.status_code == 200, answer.text
    assert answer.json()["instance"] == inst.settings.instance
    # The oldest idle connections were closed to make room: at most the cap stay open.
    assert sum(closed) == 250


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    db_url, idle_connections
):
    async with started(db_url, http_header_timeout=0.5) as inst, serving(inst) as (host, port):
        (reader,) = await idle_connections(host, port, 1)
        started_at = time.monotonic()
        assert await closed_by_server(reader, 5)

    assert time.monotonic() - started_at < 3


async def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(db_url):
    async with started(db_url, http_header_timeout=1) as inst, serving(inst) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started_at, cut = time.monotonic(), False
        while time.monotonic() - started_at < 6 and not cut:
            try:
                writer.write(b"a")
                await writer.drain()
            except ConnectionError:
                cut = True
            cut = cut or await closed_by_server(reader, 0.2)
        elapsed = time.monotonic() - started_at

    assert cut, "a slowloris connection was kept open"
    assert elapsed < 4


async def test_a_1_mib_header_line_is_refused_with_431(db_url):
    async with started(db_url) as inst, serving(inst) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 1024 * 1024:
                writer.write(b"a" * 16384)
                await writer.drain()
                sent += 16384
            writer.write(b"\r\n\r\n")
            await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(200), 5)
        except ConnectionError:
            answer = b""
        still_healthy = await health(host, port)

    assert answer.startswith(b"HTTP/1.1 431") or answer == b"", answer
    assert not answer.startswith(b"HTTP/1.1 200")
    assert still_healthy.status_code == 200


async def test_headers_just_under_the_limit_are_served(db_url):
    async with (
        started(db_url, http_max_header_bytes=16384) as inst,
        serving(inst) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client,
    ):
        fits = await client.get("/health", headers={"X-Pad": "a" * 12000})
        too_big = await client.get("/health", headers={"X-Pad": "a" * 17000})

    assert fits.status_code == 200, fits.text
    assert too_big.status_code == 431, too_big.text


# -- a real `shadowline instance` process and its file descriptors ---------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def low_fd_instance(db_url: str, tmp_path: Path, rabbitmq: None) -> Iterator[Any]:
    """A real instance process whose file-descriptor limit is only 256 (the attacker's 20,000
    connections against a limit of 20,000, scaled down)."""
    from tests.e2e.conftest import make_process

    process = make_process(
        db_url,
        tmp_path / "instance.log",
        name="fd-limit",
        cluster=f"fd{uuid.uuid4().hex[:8]}",
        SHADOWLINE_HTTP_MAX_CONNECTIONS="1000",  # more than the fds allow: the instance lowers it
    )

    def limited() -> None:  # in the child, before exec: soft and hard limit 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with process.log.open("ab") as out:
        process.popen = subprocess.Popen(
            [sys.executable, "-m", "shadowline", "instance"],
            env=process.env,
            stdout=out,
            stderr=out,
            preexec_fn=limited,
        )
    process.wait_healthy()
    yield process
    process.stop()


async def test_idle_connections_beyond_the_file_descriptor_limit_do_not_take_health_down(
    low_fd_instance, idle_connections
):
    pid = low_fd_instance.popen.pid
    port = int(low_fd_instance.url.rsplit(":", 1)[1])
    readers = await idle_connections("127.0.0.1", port, 400)
    await asyncio.sleep(1)
    fds = open_fds(pid)
    answer = await health("127.0.0.1", port)
    closed = await asyncio.gather(*(closed_by_server(r, 3) for r in readers[:100]))

    assert answer.status_code == 200, low_fd_instance.log.read_text()[-2000:]
    assert fds < 256, fds
    assert all(closed), "the oldest idle connections were not closed to make room"
    assert "connections at most" in low_fd_instance.log.read_text()
