"""`shadowline demo`: a working shadowline on this machine in one command.

It creates fresh demo databases on the local PostgreSQL, starts two instances (`node-a`, the
first master, and `node-b`, its shadow: names that stay true after a failover) and a watchdog
as real processes against the local RabbitMQ, loads sample configuration, sets up HA as an
operator would (enable, join, confirm) and prints the URLs and credentials. With --failover it
then kills the master, shows the promotion and the old master rejoining as shadow. While it
runs, a process that dies (`kill -9` of the master, to watch a failover on the HA screen) is
started again after RESTART_AFTER seconds, as a service manager would, and when the master
changes the demo says who is master now, its URL and the new kill line. Ctrl-C, SIGTERM and
SIGHUP stop everything; `--clean` removes what a demo cluster made (cli/demo_state.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from shadowline.cli import demo_text
from shadowline.cli.demo_samples import SAMPLES
from shadowline.cli.demo_state import (
    CLUSTER_NAME,
    NODES,
    Footprint,
    certificates,
    footprint,
    publishers,
    refusal,
)
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

# Snappy timings for a demo: heartbeats every 0.5 s, failover after 2 s of silence.
RESTART_AFTER = 5.0  # seconds before a process that died is started again
TIMING = {"SHADOWLINE_HEARTBEAT_INTERVAL": "0.5", "SHADOWLINE_TAKEOVER_DELAY": "2"}
PATIENCE = 60.0  # seconds for each step of the set-up and of --failover
# Each stops the demo as Ctrl-C does. Its processes run in process groups of their own, so
# Ctrl-C at the terminal reaches the demo alone, which stops each with one SIGTERM.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Demo:
    """The demo cluster's processes; `master` and `shadow` are the roles of now."""

    place: Footprint
    password: str
    master: InstanceProcess
    shadow: InstanceProcess
    watchdog: WatchdogProcess
    watchdog_url: str
    epoch: int = 1
    ca_file: str | None = None  # with --tls: the instances' own certificates, trusted

    @property
    def cluster(self) -> str:
        return self.place.cluster

    @property
    def processes(self) -> list[ShadowlineProcess]:
        return [self.master, self.shadow, self.watchdog]


def _demo(place: Footprint, port: int, tls: bool = False) -> Demo:
    password = secrets.token_urlsafe(12)
    secret = os.environ.get("SHADOWLINE_CLUSTER_SECRET") or secrets.token_hex(16)
    own, ca_file = certificates(place.log_dir / "tls") if tls else ({}, None)
    trust = {"SHADOWLINE_CA_FILE": ca_file} if ca_file else {}

    def node(name: str, port: int) -> InstanceProcess:
        made = instance(
            place.log_dir / f"{name}.log",
            name=name,
            cluster=place.cluster,
            database_url=place.database_urls[name],
            password=password,
            secret=secret,
            port=port,
            env={**TIMING, **publishers(place), **own.get(name, {}), **trust},
        )
        if note := demo_text.port_note(port, made.port, name):
            _say(note)
        made.own_group = True
        return made

    first = node(NODES[0], port)
    second = node(NODES[1], first.port + 1)
    watchdog_port = free_port(port + 10)
    if note := demo_text.port_note(port + 10, watchdog_port, "the watchdog"):
        _say(note)
    watchdog_url = f"http://127.0.0.1:{watchdog_port}"  # its own /health and /metrics
    watchdog_env = {
        **os.environ,
        **TIMING,
        "SHADOWLINE_INSTANCE": "watchdog",
        "SHADOWLINE_CLUSTER": place.cluster,
        "SHADOWLINE_CLUSTER_SECRET": secret,
        "SHADOWLINE_WATCHDOG_HTTP_BIND": watchdog_url.removeprefix("http://"),
        **trust,
    }
    watchdog = WatchdogProcess(
        env=watchdog_env, log=place.log_dir / "watchdog.log", cluster=place.cluster, own_group=True
    )
    return Demo(place, password, first, second, watchdog, watchdog_url, ca_file=ca_file)


def _set_up(demo: Demo) -> None:
    """Start everything, load the samples, then what an operator does: enable HA on the
    master, join the shadow, confirm it."""
    demo.watchdog.start()
    start_all((demo.master, demo.shadow), PATIENCE)
    with Client(demo.master.url, "admin", demo.password, ca_file=demo.ca_file) as client:
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
    with Client(new.url, "admin", demo.password, ca_file=demo.ca_file) as client:
        result = client.put(
            "subaccount", "after-failover", {"region": "eu10", "subaccount_id": "f1"}
        )
        _say(f"  a write on the new master: position {result['position']}, epoch {result['epoch']}")
    _say(f"  restarting {old.name}: it finds the newer epoch and rejoins as shadow ...")
    restarted = time.monotonic()
    old.start()
    took = wait_role(old, "shadow", 2, PATIENCE) - restarted
    with Client(old.url, "admin", demo.password, ca_file=demo.ca_file) as client:
        wait_for(
            lambda: client.ha_verify()["agree"],
            PATIENCE,
            "the old master catching up",
            tolerate=(httpx.HTTPError, ClientError, KeyError, TypeError),
        )
        _say(
            f"  {old.name} is shadow in epoch 2 after {took:.1f}s; {client.ha_verify()['sentence']}"
        )
    demo.master, demo.shadow, demo.epoch = new, old, 2


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


def _follow_master(demo: Demo) -> None:
    """If the other instance has become master in a newer epoch, say so: the URL and the kill
    line printed before name the old master."""
    other = demo.shadow
    health = other.health() if other.running else None
    if not health or health.get("role") != "master" or int(health.get("epoch", 0)) <= demo.epoch:
        return
    demo.master, demo.shadow, demo.epoch = other, demo.master, int(health["epoch"])
    _say(
        demo_text.new_master(demo.master, demo.shadow, demo.epoch, demo.password, demo.watchdog_url)
    )


def _run(demo: Demo, exit_after: float | None, failover: bool) -> None:
    _set_up(demo)
    if failover:
        _show_failover(demo)
    with Client(demo.master.url, "admin", demo.password, ca_file=demo.ca_file) as client:
        position = client.health()["position"]
    _say(
        demo_text.banner(
            cluster=demo.cluster,
            log_dir=str(demo.place.log_dir),
            master=demo.master,
            shadow=demo.shadow,
            watchdog_url=demo.watchdog_url,
            password=demo.password,
            position=position,
        )
    )
    if demo.ca_file:
        _say(
            f"HTTPS, each instance with its own self-signed certificate; trust them with\n"
            f"  export SHADOWLINE_CA_FILE={demo.ca_file}   # curl: --cacert {demo.ca_file}"
        )
    deadline = None if exit_after is None else time.monotonic() + exit_after
    died: dict[str, float] = {}
    while deadline is None or time.monotonic() < deadline:
        for process in demo.processes:
            _supervise(process, died)
        _follow_master(demo)
        time.sleep(0.5)


def _problem(message: str, code: int = 1) -> int:
    print(f"shadowline demo: {message}", file=sys.stderr)
    return code


def _stop_on_signals() -> dict[int, Any]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so each stops the demo as Ctrl-C does:
    installed explicitly, since a shell that starts `shadowline demo &` leaves SIGINT ignored.
    The handlers before, for `_restore`."""
    return {signum: signal.signal(signum, signal.default_int_handler) for signum in STOP_SIGNALS}


def _restore(handlers: dict[int, Any] | None) -> None:
    """While stopping, no signal may cut the stop short (processes left running): ignored."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN if handlers is None else handlers[signum])


def run_demo(
    port: int,
    exit_after: float | None,
    failover: bool = False,
    cluster: str = "demo",
    force: bool = False,
    tls: bool = False,
) -> int:
    if not CLUSTER_NAME.fullmatch(cluster):
        return _problem(
            f"--cluster {cluster!r}: use lower-case letters, digits, '.', '_' and '-', at most "
            "41 of them",
            2,
        )
    place = footprint(cluster)
    if (refused := refusal(place, force)) is not None:
        return _problem(refused)
    place.claim()
    demo = _demo(place, port, tls)
    handlers = _stop_on_signals()
    try:
        if problem := place.reset():
            return _problem(problem)
        _run(demo, exit_after, failover)
        return 0
    except KeyboardInterrupt:
        _say(f"\nstopping {', '.join(sorted(p.name for p in demo.processes))} ...")
        return 0
    except (HarnessError, ClientError, httpx.HTTPError) as error:
        return _problem(f"{error}; see {place.log_dir}/")
    finally:
        _restore(None)
        stop_all(demo.processes)
        place.release()
        _say(
            f"stopped. Cluster {cluster}'s databases, broker names and logs stay; "
            f"`shadowline demo --clean --cluster {cluster}` removes them."
        )
        _restore(handlers)
