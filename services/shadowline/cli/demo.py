"""`shadowline demo`: a working shadowline on this machine in one command.

It creates fresh demo databases on the local PostgreSQL, starts the instances as real
`shadowline instance` processes (as an operator would), loads sample configuration and prints
the URLs and credentials. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
from sqlalchemy.engine import make_url

from shadowline.adapters.migrate import create_database, drop_database
from shadowline.cli.common import run
from shadowline.client import Client

SAMPLES = [
    (
        "subaccount",
        "acme-eu",
        {
            "region": "cf.eu10.hana.ondemand.com",
            "subaccount_id": "8a2c9f1e",
            "display_name": "ACME Europe",
        },
    ),
    (
        "system-mapping",
        "erp-prod",
        {
            "virtual_host": "erp.virtual",
            "virtual_port": 443,
            "internal_host": "erp01.corp.local",
            "internal_port": 44300,
            "protocol": "HTTPS",
            "backend_type": "abapSys",
        },
    ),
    (
        "resource",
        "erp-odata",
        {
            "system_mapping": "erp-prod",
            "path": "/sap/opu/odata",
            "match": "prefix",
            "methods": ["GET", "POST"],
        },
    ),
    (
        "resource",
        "erp-ping",
        {"system_mapping": "erp-prod", "path": "/sap/public/ping", "match": "exact"},
    ),
]


@dataclass
class DemoInstance:
    name: str
    url: str
    database_url: str
    process: subprocess.Popen[bytes] | None = None


def _free(port: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def _base_database_url() -> str:
    return os.environ.get(
        "SHADOWLINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def _start(node: DemoInstance, password: str, log_dir: str) -> None:
    env = {
        **os.environ,
        "SHADOWLINE_DATABASE_URL": node.database_url,
        "SHADOWLINE_INSTANCE": node.name,
        "SHADOWLINE_CLUSTER": "demo",
        "SHADOWLINE_HTTP_BIND": node.url.removeprefix("http://"),
        "SHADOWLINE_ADMIN_PASSWORD": password,
        "SHADOWLINE_CLUSTER_SECRET": os.environ.get(
            "SHADOWLINE_CLUSTER_SECRET", secrets.token_hex(16)
        ),
    }
    log = open(os.path.join(log_dir, f"{node.name}.log"), "ab")  # noqa: SIM115 - owned by the child
    node.process = subprocess.Popen(
        [sys.executable, "-m", "shadowline", "instance"], env=env, stdout=log, stderr=log
    )


def _wait_healthy(node: DemoInstance, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.process is not None
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited with code {node.process.returncode}")
        try:
            if httpx.get(f"{node.url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{node.name} did not become healthy within {timeout:.0f}s")


def _stop(nodes: list[DemoInstance]) -> None:
    for node in nodes:
        if node.process and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        if node.process:
            try:
                node.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.process.kill()


def run_demo(port: int, exit_after: float | None) -> int:
    base = make_url(_base_database_url())
    log_dir = os.path.abspath(".shadowline-demo")
    os.makedirs(log_dir, exist_ok=True)
    password = secrets.token_urlsafe(12)
    master = DemoInstance(
        "demo-master",
        f"http://127.0.0.1:{_free(port)}",
        base.set(database="shadowline_demo_master").render_as_string(False),
    )
    nodes = [master]
    for node in nodes:
        run(drop_database(node.database_url))
        run(create_database(node.database_url))
    try:
        for node in nodes:
            _start(node, password, log_dir)
        for node in nodes:
            _wait_healthy(node)
        with Client(master.url, "admin", password) as client:
            for kind, name, value in SAMPLES:
                client.put(kind, name, value, reason="demo sample")
            position = client.health()["position"]
        print(
            f"""
shadowline demo is running (logs in {log_dir}/)

  master  {master.url}   role standalone, {len(SAMPLES)} sample items, position {position}

  user admin, password {password}

Try:
  export SHADOWLINE_URL={master.url} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}
  shadowline config list
  shadowline config put system-mapping crm '{{"virtual_host": "crm", "virtual_port": 443, "internal_host": "crm01", "internal_port": 8443, "protocol": "HTTPS"}}'
  shadowline history
  shadowline config list --at 2
  shadowline config diff --from 2
  curl -u admin:{password} {master.url}/config

Press Ctrl-C to stop.""",
            flush=True,
        )
        deadline = None if exit_after is None else time.monotonic() + exit_after
        while deadline is None or time.monotonic() < deadline:
            for node in nodes:
                if node.process and node.process.poll() is not None:
                    print(
                        f"{node.name} exited with code {node.process.returncode}", file=sys.stderr
                    )
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"shadowline demo: {error}; see {log_dir}/", file=sys.stderr)
        return 1
    finally:
        _stop(nodes)
