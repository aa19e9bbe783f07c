"""`shadowline broker-setup`: least-privilege RabbitMQ users for one cluster.

Master and shadow swap roles on failover, so both get the same instance permissions, limited to
the cluster's own names. The watchdog may read monitoring and send commands; a monitoring
reader may only bind its own queues to the monitoring exchange.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Annotated

import typer

from shadowline.cli.common import fail


@dataclass(frozen=True)
class Grant:
    user: str
    configure: str
    write: str
    read: str


def grants(cluster: str) -> list[Grant]:
    c = re.escape(f"shadowline.{cluster}.")
    own = r"^amq\.gen-.*$"
    instance = rf"^{c}(events|monitoring|commands|dead-letter|replication\..+|commands\..+)$|{own}"
    watchdog_queues = rf"^{c}watchdog\..+$|{own}"
    monitor_queues = rf"^{c}monitor\..+$|{own}"
    return [
        Grant(f"shadowline-{cluster}-master", instance, instance, instance),
        Grant(f"shadowline-{cluster}-shadow", instance, instance, instance),
        Grant(
            f"shadowline-{cluster}-watchdog",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}monitoring$|{watchdog_queues}",
        ),
        Grant(
            f"shadowline-{cluster}-monitor",
            monitor_queues,
            monitor_queues,
            rf"^{c}monitoring$|{monitor_queues}",
        ),
    ]


def commands(grant: Grant, password: str, vhost: str, node: str | None) -> list[list[str]]:
    base = ["rabbitmqctl", *(["-n", node] if node else [])]
    return [
        [*base, "add_user", grant.user, password],
        [
            *base,
            "set_permissions",
            "-p",
            vhost,
            grant.user,
            grant.configure,
            grant.write,
            grant.read,
        ],
    ]


def broker_setup(
    cluster: Annotated[
        str, typer.Option(envvar="SHADOWLINE_CLUSTER", help="The cluster name.")
    ] = "default",
    vhost: Annotated[str, typer.Option(help="The RabbitMQ virtual host.")] = "/",
    apply: Annotated[
        bool, typer.Option("--apply", help="Run the commands with rabbitmqctl here.")
    ] = False,
    node: Annotated[str | None, typer.Option(help="rabbitmqctl -n NODE.")] = None,
) -> None:
    """Print (or apply) least-privilege RabbitMQ users for master, shadow, watchdog and monitoring.

    Example: shadowline broker-setup --cluster prod > setup.sh; shadowline broker-setup --apply
    """
    for grant in grants(cluster):
        password = secrets.token_urlsafe(18)
        add, permissions = commands(grant, password, vhost, node)
        if not apply:
            typer.echo(shlex.join(add))
            typer.echo(shlex.join(permissions))
            continue
        result = _run(add)
        if result.returncode != 0 and "already" in result.stdout + result.stderr:
            result = _run([*add[: add.index("add_user")], "change_password", grant.user, password])
        for step in (result, _run(permissions)):
            if step.returncode != 0:
                fail(f"{shlex.join(step.args[:4])} failed: {(step.stderr or step.stdout).strip()}")
        typer.echo(f"{grant.user}\t{password}")


def _run(command: list[str], attempts: int = 4) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl; a busy node sometimes fails a CLI call transiently, so try again."""
    for attempt in range(attempts):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0 or "already" in result.stdout + result.stderr:
            return result
        time.sleep(1 + attempt)
    return result
