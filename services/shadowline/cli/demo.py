"""`shadowline demo`: a working shadowline on this machine in one command.

It creates fresh demo databases on the local PostgreSQL, starts a master, a shadow and a
watchdog as real processes against the local RabbitMQ, loads sample configuration, sets up HA as
an operator would (enable, join, confirm) and prints the URLs and credentials. With --failover
it then kills the master, shows the promotion and the old master rejoining as shadow. While it
runs, a process that dies (`kill -9` of the master, to watch a failover on the HA screen) is
started again after RESTART_AFTER seconds, as a service manager would: an old master comes back
as the new master's shadow. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy.engine import make_url

from shadowline.adapters.broker import Names, delete_topology
from shadowline.adapters.migrate import create_database, drop_database
from shadowline.cli.common import run
from shadowline.client import Client, ClientError
from shadowline.settings import GUEST, broker_user

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
class DemoProcess:
    name: str
    command: str  # instance | watchdog
    cluster: str
    url: str | None = None
    database_url: str | None = None
    process: subprocess.Popen[bytes] | None = None


# Snappy timings for a demo: heartbeats every 0.5 s, failover after 2 s of silence.
RESTART_AFTER = 5.0  # seconds before a process that died is started again
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"  # the default of SHADOWLINE_AMQP_URL


def _free(port: int) -> int:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def _start(node: DemoProcess, password: str, secret: str, log_dir: str) -> None:
    env = {
        **os.environ,
        **TIMING,
        "SHADOWLINE_INSTANCE": node.name,
        "SHADOWLINE_CLUSTER": node.cluster,
        "SHADOWLINE_ADMIN_PASSWORD": password,
        "SHADOWLINE_CLUSTER_SECRET": secret,
    }
    if node.url and node.database_url:
        env["SHADOWLINE_HTTP_BIND"] = node.url.removeprefix("http://")
        env["SHADOWLINE_DATABASE_URL"] = node.database_url
        # The demo runs on RabbitMQ's guest, which is never an implicit publisher of config
        # commands: it opts in (beside the cluster's publisher user) so that the README's
        # `BrokerClient("amqp://guest:guest@...", "demo")` works against it. Not for production.
        # Another broker user is its instances' own, a publisher anyway.
        if broker_user(env.get("SHADOWLINE_AMQP_URL", AMQP_URL)) == GUEST:
            env.setdefault(
                "SHADOWLINE_COMMAND_PUBLISHERS", f"shadowline-{node.cluster}-publisher,{GUEST}"
            )
    elif node.url:  # the watchdog: its own /health and /metrics
        env["SHADOWLINE_WATCHDOG_HTTP_BIND"] = node.url.removeprefix("http://")
    with open(os.path.join(log_dir, f"{node.name}.log"), "ab") as log:  # the child has a copy
        node.process = subprocess.Popen(
            [sys.executable, "-m", "shadowline", node.command], env=env, stdout=log, stderr=log
        )


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except (httpx.HTTPError, ClientError, KeyError, TypeError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")


def _healthy(node: DemoProcess) -> Callable[[], bool]:
    def check() -> bool:
        assert node.process is not None
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited with code {node.process.returncode}")
        return httpx.get(f"{node.url}/health", timeout=1).status_code == 200

    return check


def _role(node: DemoProcess) -> tuple[str, int]:
    doc = httpx.get(f"{node.url}/health", timeout=1).json()
    return str(doc["role"]), int(doc["epoch"])


def _stop(nodes: list[DemoProcess]) -> None:
    for node in nodes:
        if node.process and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        if node.process:
            try:
                node.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.process.kill()


def _set_up_ha(master: DemoProcess, shadow: DemoProcess, password: str) -> None:
    """What an operator does: enable HA on the master, join the shadow, confirm it."""
    assert master.url and shadow.url
    with Client(master.url, "admin", password) as m, Client(shadow.url, "admin", password) as s:
        m.ha_enable()
        s.ha_join(master.url, "admin", password)
        m.ha_confirm(shadow.name)
        _wait("the shadow catching up", lambda: m.ha()["shadow"]["state"] == "connected")


def _say(text: str) -> None:
    print(text, flush=True)


def _show_failover(
    master: DemoProcess, shadow: DemoProcess, password: str, log_dir: str, secret: str
) -> None:
    """Kill the master, watch the watchdog promote the shadow, bring the old master back."""
    assert master.url and shadow.url and master.process
    _say(f"\n--failover: killing {master.name} with SIGKILL ...")
    master.process.kill()
    master.process.wait()
    took = _wait("the promotion", lambda: _role(shadow) == ("master", 2))
    _say(
        f"  {shadow.name} is master in epoch 2, {took:.1f}s after the kill (the watchdog's log: "
        f"{log_dir}/demo-watchdog.log)"
    )
    with Client(shadow.url, "admin", password) as client:
        result = client.put(
            "subaccount", "after-failover", {"region": "eu10", "subaccount_id": "f1"}
        )
        _say(f"  a write on the new master: position {result['position']}, epoch {result['epoch']}")
    _say(f"  restarting {master.name}: it finds the newer epoch and rejoins as shadow ...")
    _start(master, password, secret, log_dir)
    took = _wait("the rejoin", lambda: _role(master) == ("shadow", 2))
    with Client(master.url, "admin", password) as client:
        _wait("the old master catching up", lambda: client.ha_verify()["agree"])
        _say(
            f"  {master.name} is shadow in epoch 2 after {took:.1f}s; {client.ha_verify()['sentence']}"
        )


def _supervise(
    node: DemoProcess, died: dict[str, float], start: Callable[[DemoProcess], None]
) -> None:
    """Say when a process died, and start it again RESTART_AFTER seconds later."""
    if node.process is None or node.process.poll() is None:
        return
    now = time.monotonic()
    if node.name not in died:
        died[node.name] = now
        _say(
            f"{node.name} exited with code {node.process.returncode}; "
            f"starting it again in {RESTART_AFTER:.0f} s"
        )
    elif now - died[node.name] >= RESTART_AFTER:
        del died[node.name]
        start(node)
        _say(f"{node.name} started again (pid {node.process.pid})")


def run_demo(
    port: int, exit_after: float | None, failover: bool = False, cluster: str = "demo"
) -> int:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,40}", cluster):
        print(
            f"shadowline demo: --cluster {cluster!r}: use lower-case letters, digits, '.', '_' "
            "and '-', at most 41 of them",
            file=sys.stderr,
        )
        return 2
    databases = "shadowline_" + re.sub(r"[^a-z0-9]", "_", cluster)
    base = make_url(
        os.environ.get("SHADOWLINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    log_dir = os.path.abspath(".shadowline-demo")
    os.makedirs(log_dir, exist_ok=True)
    password = secrets.token_urlsafe(12)
    master_port = _free(port)
    master = DemoProcess(
        "demo-master",
        "instance",
        cluster,
        f"http://127.0.0.1:{master_port}",
        base.set(database=f"{databases}_master").render_as_string(False),
    )
    shadow = DemoProcess(
        "demo-shadow",
        "instance",
        cluster,
        f"http://127.0.0.1:{_free(master_port + 1)}",
        base.set(database=f"{databases}_shadow").render_as_string(False),
    )
    watchdog = DemoProcess(
        "demo-watchdog", "watchdog", cluster, f"http://127.0.0.1:{_free(port + 10)}"
    )
    nodes = [master, shadow, watchdog]
    secret = os.environ.get("SHADOWLINE_CLUSTER_SECRET") or secrets.token_hex(16)
    for node in (master, shadow):
        assert node.database_url
        run(drop_database(node.database_url))
        run(create_database(node.database_url))
    amqp_url = os.environ.get("SHADOWLINE_AMQP_URL", AMQP_URL)
    try:
        run(delete_topology(amqp_url, Names(cluster), [master.name, shadow.name]))
    except OSError as error:
        print(f"shadowline demo: RabbitMQ at {amqp_url} is not reachable: {error}", file=sys.stderr)
        return 1
    try:
        for node in nodes:
            _start(node, password, secret, log_dir)
        for node in (master, shadow):
            _wait(f"{node.name} starting", _healthy(node))
        assert master.url and shadow.url
        with Client(master.url, "admin", password) as client:
            for kind, name, value in SAMPLES:
                client.put(kind, name, value, reason="demo sample")
        _set_up_ha(master, shadow, password)
        if failover:
            _show_failover(master, shadow, password, log_dir, secret)
            master, shadow = shadow, master  # for what follows: who is master now
        assert master.url
        with Client(master.url, "admin", password) as client:
            position = client.health()["position"]
        print(
            f"""
shadowline demo is running (logs in {log_dir}/)

  master    {master.url}   {master.name}, position {position}
  shadow    {shadow.url}   {shadow.name}, confirmed, in sync, read-only
  watchdog  {watchdog.url}   promotes the shadow 2 s after the master's heartbeats stop

  user admin, password {password} (on both: users are local to each instance)

The High Availability screens: {master.url}/ and {shadow.url}/ (log in as admin)

Try:
  export SHADOWLINE_URL={master.url} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}
  shadowline watch --cluster {cluster}                  # in another terminal: the monitoring stream
  shadowline ha status
  shadowline config put system-mapping crm '{{"virtual_host": "crm", "virtual_port": 443, "internal_host": "crm01", "internal_port": 8443, "protocol": "HTTPS"}}'
  shadowline config list --url {shadow.url}        # the shadow has it too
  shadowline ha verify --url {shadow.url}          # chain and state digest agree
  shadowline history
  shadowline config list --at 2
  shadowline config diff --from 2
  shadowline history export --format csv -o history.csv
  shadowline ha switch-roles                       # planned handover, nothing lost
  kill -9 {master.process.pid if master.process else "<pid>"}   # the master dies: watch the failover on both screens
  curl -u admin:{password} {master.url}/ha
  curl -u admin:{password} {master.url}/metrics    # Prometheus; the watchdog's: {watchdog.url}/metrics

Press Ctrl-C to stop.""",
            flush=True,
        )
        deadline = None if exit_after is None else time.monotonic() + exit_after
        died: dict[str, float] = {}
        while deadline is None or time.monotonic() < deadline:
            for node in nodes:
                _supervise(node, died, lambda n: _start(n, password, secret, log_dir))
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, ClientError, httpx.HTTPError) as error:
        print(f"shadowline demo: {error}; see {log_dir}/", file=sys.stderr)
        return 1
    finally:
        _stop(nodes)
