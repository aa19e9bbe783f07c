"""HTTP rate: a real `shadowline instance` process, 16 keep-alive clients sending PUTs.

The clients run in this process (aiohttp, HTTP/1.1, one session with one connection each). On
2 cores they compete with the server and PostgreSQL for CPU, so the CPU each side used is
measured and reported: a low figure here can be the client's fault, and the numbers say whether
it is. aiohttp rather than httpx: httpx spent about 1 ms of CPU per request here, as much as
the instance serving it; aiohttp (C-accelerated HTTP parsing) spends a fraction of that.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from shadowline.harness import InstanceProcess, instance
from shadowline_bench.common import KIND, CpuMeter, Run, drive, fresh_database, system_mapping


@dataclass
class Server:
    url: str
    password: str
    process: InstanceProcess
    log: Path
    exit_code: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def _start(database_url: str, log: Path) -> Server:
    password = secrets.token_urlsafe(12)
    process = instance(
        log,
        name="bench-http",
        cluster="bench",
        database_url=database_url,
        password=password,
        secret=secrets.token_hex(16),
    )
    if profile := os.environ.get("SHADOWLINE_BENCH_PROFILE_SERVER"):
        # Evidence for a bottleneck hunt: the instance runs under cProfile; the profile is
        # written when it exits after SIGTERM (read it with `python -m pstats PATH`).
        process.interpreter = ("-m", "cProfile", "-o", profile)
    process.start()
    return Server(process.url, password, process, log)


async def _stop(server: Server) -> None:
    """SIGTERM, as an operator would; the graceful shutdown must end with exit code 0."""
    server.exit_code = await asyncio.to_thread(server.process.stop, 30)
    if server.exit_code == -signal.SIGKILL:
        server.notes["killed_after_sigterm_timeout"] = True


def _clients(server: Server, count: int) -> list[aiohttp.ClientSession]:
    """One session per client, each with one keep-alive connection, as `count` programs would."""
    # The Authorization header is computed once: per-request BasicAuth would only add client CPU.
    token = base64.b64encode(f"admin:{server.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    return [
        aiohttp.ClientSession(
            server.url,
            headers=headers,
            connector=aiohttp.TCPConnector(limit=1),
            timeout=aiohttp.ClientTimeout(total=30),
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies: skip the jar's work
        )
        for _ in range(count)
    ]


async def _get(client: aiohttp.ClientSession, path: str) -> bytes:
    async with client.get(path) as response:
        response.raise_for_status()
        return await response.read()


async def _batches(client: aiohttp.ClientSession) -> tuple[float, float]:
    """(commits, events) so far, from the instance's own /metrics."""
    text = (await _get(client, "/metrics")).decode()
    found = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for suffix in found:
            if line.startswith(f"shadowline_append_batch_size_{suffix} "):
                found[suffix] = float(line.split()[1])
    return found["count"], found["sum"]


async def _head(client: aiohttp.ClientSession) -> int:
    return int(orjson.loads(await _get(client, "/health"))["position"])


async def _load(
    server: Server, database_url: str, clients: list[aiohttp.ClientSession], count: int
) -> Run:
    statuses: Counter[str] = Counter()
    first = clients[0]
    # Warm-up: one authenticated request pays the Argon2 check once and fills the cache.
    await _get(first, "/ha")
    commits_before, events_before = await _batches(first)
    head_before = await _head(first)

    async def write(w: int, i: int) -> bool:
        name, value = system_mapping(i)
        try:
            async with clients[w].put(f"/config/{KIND}/{name}", data=orjson.dumps(value)) as r:
                await r.read()  # the whole response, so the connection is reused
        except (aiohttp.ClientError, TimeoutError) as error:
            statuses[error.__class__.__name__] += 1
            return False
        statuses[str(r.status)] += 1
        return r.status in (200, 201)

    meter = await CpuMeter.start(database_url, server.process.pid)
    seconds, latencies, failures = await drive(len(clients), 0, count, write)
    cpu = await meter.stop("client")
    commits, events = await _batches(first)
    head = await _head(first)
    notes: dict[str, Any] = {
        "client": f"aiohttp {aiohttp.__version__}",
        "statuses": dict(statuses),
        "commits": int(commits - commits_before),
        "durable_positions": head - head_before,
    }
    if commits > commits_before:
        notes["events_per_commit"] = round((events - events_before) / (commits - commits_before), 1)
    if latencies:
        notes["client_cpu_us_per_request"] = round(1e6 * cpu["client_s"] / len(latencies), 1)
    return Run(
        f"shadowline HTTP PUT ({len(clients)} clients)",
        len(clients),
        len(latencies),
        seconds,
        latencies,
        failures,
        cpu,
        notes,
    )


async def http_run(base_url: str, count: int, clients: int = 16) -> tuple[Run, Server]:
    """Start an instance on a fresh database, load it, stop it; the server says how it ended."""
    async with fresh_database(base_url, "http") as url:
        log = Path(tempfile.mkdtemp(prefix="shadowline-bench-")) / "instance.log"
        server = _start(url, log)
        try:
            await asyncio.to_thread(server.process.wait_healthy, 60)
            pool = _clients(server, clients)
            try:
                run = await _load(server, url, pool, count)
            finally:
                await asyncio.gather(*(c.close() for c in pool))
        except BaseException:
            print(f"instance log: {log}", file=sys.stderr)
            raise
        finally:
            await asyncio.shield(_stop(server))
        run.notes["server_exit_code"] = server.exit_code
        if server.exit_code == 0:
            log.unlink(missing_ok=True)
            log.parent.rmdir()
        else:
            run.notes["server_log"] = str(log)
        return run, server
