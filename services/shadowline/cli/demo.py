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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from shadowline.adapters.broker import Names, delete_topology
from shadowline.adapters.migrate import create_database, drop_database
from shadowline.cli.common import run
from shadowline.cli.demo_samples import SAMPLES
from shadowline.client import Client, ClientError
from shadowline.harness import (
    HarnessError,
    InstanceProcess,
    ShadowlineProcess,
    WatchdogProcess,
    free_port,
    instance,
    set_up_ha,
    start_all,
    stop_all,
    wait_for,
    wait_role,
)
from shadowline.harness.cluster import connected
from shadowline.settings import GUEST, broker_user

# Snappy timings for a demo: heartbeats every 0.5 s, failover after 2 s of silence.
RESTART_AFTER = 5.0  # seconds before a process that died is started again
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"  # the default of SHADOWLINE_AMQP_URL
PATIENCE = 60.0  # seconds for each step of the set-up and of --failover


@dataclass
class Demo:
    """The demo cluster's processes; `master` and `shadow` are the roles of now."""

    cluster: str
    password: str
    log_dir: Path
    master: InstanceProcess
    shadow: InstanceProcess
    watchdog: WatchdogProcess
    watchdog_url: str

    @property
    def processes(self) -> list[ShadowlineProcess]:
        return [self.master, self.shadow, self.watchdog]


def _publishers(cluster: str) -> dict[str, str]:
    """The demo runs on RabbitMQ's guest, which is never an implicit publisher of config
    commands: it opts in (beside the cluster's publisher user) so that the README's
    `BrokerClient("amqp://guest:guest@...", "demo")` works against it. Not for production.
    Another broker user is its instances' own, a publisher anyway."""
    if "SHADOWLINE_COMMAND_PUBLISHERS" in os.environ:
        return {}
    if broker_user(os.environ.get("SHADOWLINE_AMQP_URL", AMQP_URL)) != GUEST:
        return {}
    return {"SHADOWLINE_COMMAND_PUBLISHERS": f"shadowline-{cluster}-publisher,{GUEST}"}


def _demo(cluster: str, port: int, log_dir: Path) -> Demo:
    databases = "shadowline_" + re.sub(r"[^a-z0-9]", "_", cluster)
    base = make_url(
        os.environ.get("SHADOWLINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    password = secrets.token_urlsafe(12)
    secret = os.environ.get("SHADOWLINE_CLUSTER_SECRET") or secrets.token_hex(16)

    def node(role: str, port: int) -> InstanceProcess:
        return instance(
            log_dir / f"demo-{role}.log",
            name=f"demo-{role}",
            cluster=cluster,
            database_url=base.set(database=f"{databases}_{role}").render_as_string(False),
            password=password,
            secret=secret,
            port=port,
            env={**TIMING, **_publishers(cluster)},
        )

    master = node("master", port)
    shadow = node("shadow", master.port + 1)
    watchdog_url = f"http://127.0.0.1:{free_port(port + 10)}"  # its own /health and /metrics
    watchdog_env = {
        **os.environ,
        **TIMING,
        "SHADOWLINE_INSTANCE": "demo-watchdog",
        "SHADOWLINE_CLUSTER": cluster,
        "SHADOWLINE_CLUSTER_SECRET": secret,
        "SHADOWLINE_WATCHDOG_HTTP_BIND": watchdog_url.removeprefix("http://"),
    }
    watchdog = WatchdogProcess(env=watchdog_env, log=log_dir / "demo-watchdog.log", cluster=cluster)
    return Demo(cluster, password, log_dir, master, shadow, watchdog, watchdog_url)


def _reset(demo: Demo) -> str | None:
    """Fresh empty databases and no broker names left from an earlier demo; what failed."""
    for node in (demo.master, demo.shadow):
        run(drop_database(node.env["SHADOWLINE_DATABASE_URL"]))
        run(create_database(node.env["SHADOWLINE_DATABASE_URL"]))
    amqp_url = os.environ.get("SHADOWLINE_AMQP_URL", AMQP_URL)
    try:
        run(delete_topology(amqp_url, Names(demo.cluster), [demo.master.name, demo.shadow.name]))
    except OSError as error:
        return f"RabbitMQ at {amqp_url} is not reachable: {error}"
    return None


def _set_up(demo: Demo) -> None:
    """Start everything, load the samples, then what an operator does: enable HA on the
    master, join the shadow, confirm it."""
    demo.watchdog.start()
    start_all((demo.master, demo.shadow), PATIENCE)
    with Client(demo.master.url, "admin", demo.password) as client:
        for kind, name, value in SAMPLES:
            client.put(kind, name, value, reason="demo sample")
    set_up_ha(demo.master, demo.shadow, demo.password)
    wait_for(
        lambda: connected(demo.master, demo.shadow, demo.password),
        PATIENCE,
        "the shadow catching up",
    )


def _say(text: str) -> None:
    print(text, flush=True)


def _show_failover(demo: Demo) -> None:
    """Kill the master, watch the watchdog promote the shadow, bring the old master back."""
    old, new = demo.master, demo.shadow
    _say(f"\n--failover: killing {old.name} with SIGKILL ...")
    killed = time.monotonic()
    old.kill()
    took = wait_role(new, "master", 2, PATIENCE) - killed
    _say(
        f"  {new.name} is master in epoch 2, {took:.1f}s after the kill (the watchdog's log: "
        f"{demo.watchdog.log})"
    )
    with Client(new.url, "admin", demo.password) as client:
        result = client.put(
            "subaccount", "after-failover", {"region": "eu10", "subaccount_id": "f1"}
        )
        _say(f"  a write on the new master: position {result['position']}, epoch {result['epoch']}")
    _say(f"  restarting {old.name}: it finds the newer epoch and rejoins as shadow ...")
    restarted = time.monotonic()
    old.start()
    took = wait_role(old, "shadow", 2, PATIENCE) - restarted
    with Client(old.url, "admin", demo.password) as client:
        wait_for(
            lambda: client.ha_verify()["agree"],
            PATIENCE,
            "the old master catching up",
            tolerate=(httpx.HTTPError, ClientError, KeyError, TypeError),
        )
        _say(
            f"  {old.name} is shadow in epoch 2 after {took:.1f}s; {client.ha_verify()['sentence']}"
        )
    demo.master, demo.shadow = new, old


def _banner(demo: Demo, position: int) -> str:
    master, shadow, password = demo.master, demo.shadow, demo.password
    return f"""
shadowline demo is running (logs in {demo.log_dir}/)

  master    {master.url}   {master.name}, position {position}
  shadow    {shadow.url}   {shadow.name}, confirmed, in sync, read-only
  watchdog  {demo.watchdog_url}   promotes the shadow 2 s after the master's heartbeats stop

  user admin, password {password} (on both: users are local to each instance)

The High Availability screens: {master.url}/ and {shadow.url}/ (log in as admin)

Try:
  export SHADOWLINE_URL={master.url} SHADOWLINE_USER=admin SHADOWLINE_PASSWORD={password}
  shadowline watch --cluster {demo.cluster}                  # in another terminal: the monitoring stream
  shadowline ha status
  shadowline config put system-mapping crm '{{"virtual_host": "crm", "virtual_port": 443, "internal_host": "crm01", "internal_port": 8443, "protocol": "HTTPS"}}'
  shadowline config list --url {shadow.url}        # the shadow has it too
  shadowline ha verify --url {shadow.url}          # chain and state digest agree
  shadowline history
  shadowline config list --at 2
  shadowline config diff --from 2
  shadowline history export --format csv -o history.csv
  shadowline ha switch-roles                       # planned handover, nothing lost
  kill -9 {master.pid or "<pid>"}   # the master dies: watch the failover on both screens
  curl -u admin:{password} {master.url}/ha
  curl -u admin:{password} {master.url}/metrics    # Prometheus; the watchdog's: {demo.watchdog_url}/metrics

Press Ctrl-C to stop."""


def _supervise(process: ShadowlineProcess, died: dict[str, float]) -> None:
    """Say when a process died, and start it again RESTART_AFTER seconds later."""
    if process.popen is None or process.running:
        return
    now = time.monotonic()
    if process.name not in died:
        died[process.name] = now
        _say(
            f"{process.name} exited with code {process.returncode}; "
            f"starting it again in {RESTART_AFTER:.0f} s"
        )
    elif now - died[process.name] >= RESTART_AFTER:
        del died[process.name]
        process.start()
        _say(f"{process.name} started again (pid {process.pid})")


def _run(demo: Demo, exit_after: float | None, failover: bool) -> None:
    _set_up(demo)
    if failover:
        _show_failover(demo)
    with Client(demo.master.url, "admin", demo.password) as client:
        position = client.health()["position"]
    print(_banner(demo, position), flush=True)
    deadline = None if exit_after is None else time.monotonic() + exit_after
    died: dict[str, float] = {}
    while deadline is None or time.monotonic() < deadline:
        for process in demo.processes:
            _supervise(process, died)
        time.sleep(0.5)


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
    log_dir = Path(os.path.abspath(".shadowline-demo"))
    log_dir.mkdir(parents=True, exist_ok=True)
    demo = _demo(cluster, port, log_dir)
    if problem := _reset(demo):
        print(f"shadowline demo: {problem}", file=sys.stderr)
        return 1
    try:
        _run(demo, exit_after, failover)
        return 0
    except KeyboardInterrupt:
        return 0
    except (HarnessError, ClientError, httpx.HTTPError) as error:
        print(f"shadowline demo: {error}; see {log_dir}/", file=sys.stderr)
        return 1
    finally:
        stop_all(demo.processes)
