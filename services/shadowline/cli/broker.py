"""`shadowline broker-setup`: least-privilege RabbitMQ users for one cluster.

One user per instance (`shadowline-<cluster>-<instance>`; by default the instances `master`
and `shadow`, as in compose.yaml), a watchdog, a monitoring reader and a config publisher. The
broker is no trust root (messages are signed), so these rights are a second line: each user may
publish only the routing keys its role sends (RabbitMQ topic permissions, one per exchange),
declare only the queues its code declares and consume only its own.

- An instance: heartbeats in its own name, role changes, alerts, config change summaries and
  planned handovers on monitoring; replicated events (master and shadow swap roles, so both
  may); nothing on the commands exchange (switch roles goes over HTTP); command replies on the
  default exchange. It may declare its shadow's replication queue (the master keeps events for
  an absent shadow), and only its own command queue (exclusive: another instance holding it
  would cut it off from promote commands).
- The watchdog: failover steps on monitoring and promote commands.
- The monitoring reader: binds its own queues to monitoring; publishes nothing.
- A publisher: config commands only; replies come by direct reply-to (no permission needed).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import typer

from shadowline.cli.common import examples, fail

EXAMPLES = examples(
    "shadowline broker-setup --cluster prod > setup.sh   # review, then run it",
    "shadowline broker-setup --cluster prod --apply      # run rabbitmqctl here",
)

# A topic permission that matches no routing key at all: '' (which RabbitMQ reads as '^$') and
# '^$' still allow the empty one, which an exchange bound with `#` routes.
NOTHING = "(?!)"
ANY = ".*"
# Server-named queues (amq.gen-*), and the names aio-pika gives the exclusive queues of a
# robust connection (amq_<uuid4 hex>, so it can declare them again after a reconnect).
SERVER_NAMED = r"^amq\.gen-.*$|^amq_[0-9a-f]{32}$"
INSTANCE_NAME = r"[A-Za-z0-9_-]{1,63}"  # Settings.instance: one word of a routing key
ROLES = ("watchdog", "monitor", "publisher")
DEFAULT_INSTANCES = ("master", "shadow")


@dataclass(frozen=True)
class Topic:
    """RabbitMQ topic permissions on one topic exchange: the routing keys the user may publish
    with (write) and bind with (read). An exchange without one allows every routing key."""

    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Grant:
    user: str
    configure: str
    write: str
    read: str
    topics: tuple[Topic, ...] = ()


def instance_grant(cluster: str, instance: str) -> Grant:
    c, i = re.escape(f"shadowline.{cluster}."), re.escape(instance)
    # The dead-letter exchange and its queue share one name, so write and read on that queue
    # (to bind it) is write and read on the exchange too: its topic permission refuses publishing.
    cluster_names = "events|monitoring|dead-letter|config-commands"
    any_replication = rf"replication\.{INSTANCE_NAME}"
    configure = rf"^{c}({cluster_names}|commands|{any_replication}|commands\.{i})$|{SERVER_NAMED}"
    # Not the commands exchange. The default exchange for the replies to config commands
    # (direct reply-to works only there): it can reach any queue of the vhost by its name, so
    # clusters that must not touch each other's queues get a vhost each (--vhost).
    write = rf"^{c}({cluster_names}|{any_replication}|commands\.{i})$|{SERVER_NAMED}|^amq\.default$"
    # Read on every replication queue, not just its own: RabbitMQ lets only a user who may read
    # a queue declare it with a dead-letter exchange, and the master declares its shadow's.
    read = rf"^{c}({cluster_names}|commands|{any_replication}|commands\.{i})$|{SERVER_NAMED}"
    monitoring = rf"^heartbeat\.{i}$|^role\.changed$|^alert\.[a-z0-9-]+$|^config\.changed$" + (
        r"|^failover\.(switched|hook)$"
    )
    return Grant(
        f"shadowline-{cluster}-{instance}",
        configure,
        write,
        read,
        topics=(
            # Read: the heartbeat queue binds heartbeat.<peer>, the HA screen's feed role.changed,
            # failover.*, alert.* (before 2026-12-03: heartbeat.* and #, kept for rolling upgrades).
            Topic(f"shadowline.{cluster}.monitoring", monitoring, ANY),
            Topic(
                f"shadowline.{cluster}.events",
                r"^config\.[^.]+\.(put|deleted)$|^ha\.[A-Za-z]+$",
                r"^(config|ha)\.#$",
            ),
            # Its own command queue (*.<instance>) and the config command queue (config.#).
            Topic(f"shadowline.{cluster}.commands", NOTHING, rf"^\*\.{i}$|^config\.#$"),
            Topic(f"shadowline.{cluster}.dead-letter", NOTHING, r"^#$"),
        ),
    )


def grants(cluster: str, instances: Sequence[str] = DEFAULT_INSTANCES) -> list[Grant]:
    c = re.escape(f"shadowline.{cluster}.")
    watchdog_queues = rf"^{c}watchdog\..+$|{SERVER_NAMED}"
    monitor_queues = rf"^{c}monitor\..+$|{SERVER_NAMED}"
    return [
        *(instance_grant(cluster, instance) for instance in instances),
        # A watchdog sends promote commands only: it has no business changing configuration
        # (the master would refuse it too: SHADOWLINE_COMMAND_PUBLISHERS), and on monitoring it
        # says what it decided, never speaks for an instance.
        Grant(
            f"shadowline-{cluster}-watchdog",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}(monitoring|commands)$|{watchdog_queues}",
            rf"^{c}monitoring$|{watchdog_queues}",
            topics=(
                Topic(f"shadowline.{cluster}.commands", rf"^promote\.{INSTANCE_NAME}$", NOTHING),
                Topic(f"shadowline.{cluster}.monitoring", r"^failover\.[a-z-]+$", ANY),
            ),
        ),
        # Write on its own queues only (binding needs it), on no exchange: it publishes nothing.
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
            topics=(
                Topic(f"shadowline.{cluster}.commands", r"^config\.(put|delete)\.[^.]+$", NOTHING),
            ),
        ),
    ]


def check_instances(instances: Sequence[str]) -> None:
    """Refuse names the instances' settings refuse, or that would collide with another user."""
    for instance in instances:
        if not re.fullmatch(INSTANCE_NAME, instance):
            fail(f"--instance {instance!r}: an instance name matches ^{INSTANCE_NAME}$")
        if instance in ROLES:
            fail(f"--instance {instance!r}: that is the name of the cluster's {instance} user")
    if len(set(instances)) != len(instances):
        fail("--instance: each instance once")


def new_password() -> str:
    """A random password that rabbitmqctl cannot take for an option: token_urlsafe may start
    with '-', and `rabbitmqctl add_user u -abc` fails with "Invalid options for this command"."""
    import secrets  # with hmac, when a password is made, not for every `shadowline ...`

    return "p" + secrets.token_urlsafe(18)


def commands(grant: Grant, password: str, vhost: str, node: str | None) -> list[list[str]]:
    """add_user first, then the permissions (run after the user exists)."""
    base = ["rabbitmqctl", *(["-n", node] if node else [])]
    permissions = [grant.user, grant.configure, grant.write, grant.read]
    # Cleared first, so that running it again leaves no topic permission of an older version.
    return [
        [*base, "add_user", grant.user, password],
        [*base, "set_permissions", "-p", vhost, *permissions],
        [*base, "clear_topic_permissions", "-p", vhost, grant.user],
        *(
            [*base, "set_topic_permissions", "-p", vhost, grant.user, t.exchange, t.write, t.read]
            for t in grant.topics
        ),
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
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance",
            help="An instance's name (SHADOWLINE_INSTANCE); repeat it. Default: master, shadow.",
        ),
    ] = None,
) -> None:
    """Print (or apply) least-privilege RabbitMQ users: one per instance, watchdog, monitor,
    publisher.

    Example: shadowline broker-setup --cluster prod --instance node-a --instance node-b
    """
    instances = tuple(instance or DEFAULT_INSTANCES)
    check_instances(instances)
    for grant in grants(cluster, instances):
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
