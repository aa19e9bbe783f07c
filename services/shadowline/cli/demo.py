"""`shadowline demo`: a working shadowline on this machine in one command.

It creates fresh demo databases on the local PostgreSQL, starts a master and a shadow as real
`shadowline instance` processes against the local RabbitMQ, loads sample configuration, sets up
HA as an operator would (enable, join, confirm) and prints the URLs and credentials. Ctrl-C
stops everything.
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

from shadowline.adapters.broker import Names, delete_topology
from shadowline.adapters.migrate import create_database, drop_database
from shadowline.cli.common import run
from shadowline.client import Client, ClientError

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
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
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


def _start(node: DemoInstance, password: str, secret: str, log_dir: str) -> None:
    env = {
        **os.environ,
        "SHADOWLINE_DATABASE_URL": node.database_url,
        "SHADOWLINE_INSTANCE": node.name,
        "SHADOWLINE_CLUSTER": "demo",
        "SHADOWLINE_HTTP_BIND": node.url.removeprefix("http://"),
        "SHADOWLINE_ADMIN_PASSWORD": password,
        "SHADOWLINE_CLUSTER_SECRET": secret,
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


def _set_up_ha(master: DemoInstance, shadow: DemoInstance, password: str) -> None:
    """What an operator does: enable HA on the master, join the shadow, confirm it."""
    with Client(master.url, "admin", password) as m, Client(shadow.url, "admin", password) as s:
        m.ha_enable()
        s.ha_join(master.url, "admin", password)
        m.ha_confirm(shadow.name)
        deadline = time.monotonic() + 60
        while m.ha()["shadow"]["state"] != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError("the shadow did not catch up within 60s")
            time.sleep(0.2)


def run_demo(port: int, exit_after: float | None) -> int:
    base = make_url(_base_database_url())
    log_dir = os.path.abspath(".shadowline-demo")
    os.makedirs(log_dir, exist_ok=True)
    password = secrets.token_urlsafe(12)
    master_port = _free(port)
    master = DemoInstance(
        "demo-master",
        f"http://127.0.0.1:{master_port}",
        base.set(database="shadowline_demo_master").render_as_string(False),
    )
    shadow = DemoInstance(
        "demo-shadow",
        f"http://127.0.0.1:{_free(master_port + 1)}",
        base.set(database="shadowline_demo_shadow").render_as_string(False),
    )
    nodes = [master, shadow]
    secret = os.environ.get("SHADOWLINE_CLUSTER_SECRET") or secrets.token_hex(16)
    for node in nodes:
        run(drop_database(node.database_url))
        run(create_database(node.database_url))
    amqp_url = os.environ.get("SHADOWLINE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    try:
        run(delete_topology(amqp_url, Names("demo"), [shadow.name]))
    except OSError as error:
        print(f"shadowline demo: RabbitMQ at {amqp_url} is not reachable: {error}", file=sys.stderr)
        return 1
    try:
        for node in nodes:
            _start(node, password, secret, log_dir)
        for node in nodes:
            _wait_healthy(node)
        with Client(master.url, "admin", password) as client:
            for kind, name, value in SAMPLES:
                client.put(kind, name, value, reason="demo sample")
        _set_up_ha(master, shadow, password)
        with Client(master.url, "admin", password) as client:
            position = client.health()["position"]
        print(
            f"""
shadowline demo is running (logs in {log_dir}/)

  master  {master.url}   {len(SAMPLES)} sample items, position {position}
  shadow  {shadow.url}   confirmed, in sync, read-only

  user admin, password {password} (on both: users are local to each instance)

Try:
  export SHADOWLINE_URL={master.url} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}
  shadowline ha status
  shadowline config put system-mapping crm '{{"virtual_host": "crm", "virtual_port": 443, "internal_host": "crm01", "internal_port": 8443, "protocol": "HTTPS"}}'
  shadowline config list --url {shadow.url}        # the shadow has it too
  shadowline ha verify --url {shadow.url}          # chain and state digest agree
  shadowline history
  shadowline config list --at 2
  shadowline config diff --from 2
  curl -u admin:{password} {master.url}/ha

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
    except (RuntimeError, ClientError, httpx.HTTPError) as error:
        print(f"shadowline demo: {error}; see {log_dir}/", file=sys.stderr)
        return 1
    finally:
        _stop(nodes)
