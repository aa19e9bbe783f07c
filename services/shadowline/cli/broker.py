"""`shadowline broker-setup`: least-privilege RabbitMQ users for one cluster.

Master and shadow swap roles on failover, so both get the same instance permissions, limited to
the cluster's own names. The watchdog may read monitoring and send commands; a monitoring
reader may only bind its own queues to the monitoring exchange; a publisher may only publish
config commands (and receive their replies through RabbitMQ's direct reply-to, which needs no
permission).
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
    # (exchange, write, read): routing keys the user may publish with / bind to on that topic
    # exchange (RabbitMQ topic permissions), for a user whose exchange carries other traffic.
    topic: tuple[str, str, str] | None = None


def grants(cluster: str) -> list[Grant]:
    c = re.escape(f"shadowline.{cluster}.")
    # Server-named queues (amq.gen-*), and the names aio-pika gives the exclusive queues of a
    # robust connection (amq_<uuid4 hex>, so it can declare them again after a reconnect).
    own = r"^amq\.gen-.*$|^amq_[0-9a-f]{32}$"
    names = r"(events|monitoring|commands|dead-letter|config-commands|replication\..+|commands\..+)"
    instance = rf"^{c}{names}$|{own}"
    # Replies to config commands go out on the default exchange: RabbitMQ's direct reply-to
    # works only there. Writing to amq.default can reach any queue of the vhost by its name,
    # so clusters that must not touch each other's queues get a vhost each (--vhost).
    replies = r"|^amq\.default$"
    watchdog_queues = rf"^{c}watchdog\..+$|{own}"
    monitor_queues = rf"^{c}monitor\..+$|{own}"
    return [
        Grant(f"shadowline-{cluster}-master", instance, instance + replies, instance),
        Grant(f"shadowline-{cluster}-shadow", instance, instance + replies, instance),
        # On the commands exchange a watchdog sends promote commands only: it has no business
        # changing configuration (the master would refuse it too: SHADOWLINE_COMMAND_PUBLISHERS).
        Grant(
            f"shadowline-{cluster}-watchdog",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}monitoring$|{watchdog_queues}",
            topic=(f"shadowline.{cluster}.commands", r"^promote\.[^.]+$", "^$"),
        ),
        Grant(
            f"shadowline-{cluster}-monitor",
            monitor_queues,
            monitor_queues,
            rf"^{c}monitoring$|{monitor_queues}",
        ),
        # Declares nothing, reads nothing (the replies come by direct reply-to), writes to the
        # commands exchange only, and there only config commands: promote commands are signed
        # anyway, but a publisher has no business sending them.
        Grant(
            f"shadowline-{cluster}-publisher",
            "",
            rf"^{c}commands$",
            "",
            topic=(f"shadowline.{cluster}.commands", r"^config\.(put|delete)\.[^.]+$", "^$"),
        ),
    ]


def new_password() -> str:
    """A random password that rabbitmqctl cannot take for an option: token_urlsafe may start
    with '-', and `rabbitmqctl add_user u -abc` fails with "Invalid options for this command"."""
    return "p" + secrets.token_urlsafe(18)


def commands(grant: Grant, password: str, vhost: str, node: str | None) -> list[list[str]]:
    """add_user first, then the permissions (run after the user exists)."""
    base = ["rabbitmqctl", *(["-n", node] if node else [])]
    permissions = [grant.user, grant.configure, grant.write, grant.read]
    found = [
        [*base, "add_user", grant.user, password],
        [*base, "set_permissions", "-p", vhost, *permissions],
    ]
    if grant.topic is not None:
        found.append([*base, "set_topic_permissions", "-p", vhost, grant.user, *grant.topic])
    return found


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
    """Print (or apply) least-privilege RabbitMQ users: master, shadow, watchdog, monitor, publisher.

    Example: shadowline broker-setup --cluster prod > setup.sh; shadowline broker-setup --apply
    """
    for grant in grants(cluster):
        password = new_password()
        add, *permissions = commands(grant, password, vhost, node)
        if not apply:
            for command in (add, *permissions):
                typer.echo(shlex.join(command))
            continue
        result = _run(add)
        if result.returncode != 0 and "already" in result.stdout + result.stderr:
            result = _run([*add[: add.index("add_user")], "change_password", grant.user, password])
        for step in (result, *map(_run, permissions)):
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
