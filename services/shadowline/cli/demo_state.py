"""What a demo cluster leaves on this machine, and how it is found and removed.

A demo cluster `<name>` owns two databases on the local PostgreSQL (`shadowline_<name>_node_a`
and `..._node_b`), its broker names (exchanges and quorum queues `shadowline.<name>.*`), and a
folder of its own for logs, `.shadowline-demo/<name>/`, which also holds the PID of the demo
process while it runs. Each run recreates the cluster with new logs (the last run's are kept
once, as `<process>.log.1`). `shadowline demo --clean` removes all of them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from shadowline.adapters.amqp_nodes import node_of, split_urls
from shadowline.adapters.broker import Names, delete_topology
from shadowline.adapters.migrate import create_database, database_exists, drop_database
from shadowline.adapters.tls import self_signed
from shadowline.cli.common import run
from shadowline.settings import GUEST, broker_user

NODES = ("node-a", "node-b")  # role-neutral: after a failover node-b is the master
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"  # the default of SHADOWLINE_AMQP_URL
CLUSTER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,40}")


@dataclass(frozen=True)
class Footprint:
    cluster: str
    log_dir: Path
    database_urls: dict[str, str]  # instance name -> its database URL
    amqp_url: str

    @property
    def pid_file(self) -> Path:
        return self.log_dir / "demo.pid"

    def running_pid(self) -> int | None:
        """The PID of a demo of this cluster that is running now, if any."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # alive, someone else's
        return pid if pid != os.getpid() else None

    def claim(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")

    def release(self) -> None:
        if self.running_pid() is None and self.pid_file.exists():
            self.pid_file.unlink(missing_ok=True)

    def existing_databases(self) -> list[str]:
        urls = self.database_urls.values()
        return [str(make_url(u).database) for u in urls if run(database_exists(u))]

    def reset(self) -> str | None:
        """Fresh empty databases, new logs and no broker names left from an earlier run; what
        failed."""
        self.new_logs()
        for url in self.database_urls.values():
            run(drop_database(url))
            run(create_database(url))
        return self._delete_topology()

    def new_logs(self) -> None:
        """The logs of a recreated cluster start empty: the last run's are kept, as .log.1."""
        for log in self.log_dir.glob("*.log"):
            log.replace(log.with_name(f"{log.name}.1"))

    def remove(self) -> str | None:
        """Drop the databases and the broker names, delete the log folder; what failed."""
        for url in self.database_urls.values():
            run(drop_database(url))
        problem = self._delete_topology()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        return problem

    def _delete_topology(self) -> str | None:
        try:
            run(delete_topology(self.amqp_url, Names(self.cluster), list(self.database_urls)))
        except OSError as error:
            nodes = ", ".join(node_of(url) for url in split_urls(self.amqp_url))
            return f"RabbitMQ at {nodes} is not reachable: {error}"
        return None


def footprint(cluster: str, base_dir: Path | None = None) -> Footprint:
    base = make_url(
        os.environ.get("SHADOWLINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    prefix = "shadowline_" + re.sub(r"[^a-z0-9]", "_", cluster)
    urls = {
        node: base.set(database=f"{prefix}_{node.replace('-', '_')}").render_as_string(False)
        for node in NODES
    }
    root = base_dir if base_dir is not None else Path(os.path.abspath(".shadowline-demo"))
    return Footprint(cluster, root / cluster, urls, os.environ.get("SHADOWLINE_AMQP_URL", AMQP_URL))


def publishers(place: Footprint) -> dict[str, str]:
    """The demo runs on RabbitMQ's guest, which is never an implicit publisher of config
    commands: it opts in (beside the cluster's publisher user) so that the README's
    `BrokerClient("amqp://guest:guest@...", "demo")` works against it. Not for production.
    Another broker user is its instances' own, a publisher anyway."""
    if "SHADOWLINE_COMMAND_PUBLISHERS" in os.environ or broker_user(place.amqp_url) != GUEST:
        return {}
    return {"SHADOWLINE_COMMAND_PUBLISHERS": f"shadowline-{place.cluster}-publisher,{GUEST}"}


def refusal(place: Footprint, force: bool) -> str | None:
    """None if the demo may (re)create the cluster's databases (asked on a terminal), else why
    not, naming the cluster in every command it suggests."""
    if (pid := place.running_pid()) is not None:
        return (
            f"a demo of cluster {place.cluster!r} is running (pid {pid}): stop it first, or "
            "choose another --cluster"
        )
    found = place.existing_databases()
    if not found or force:
        return None
    exists = f"cluster {place.cluster!r} exists from an earlier demo (databases {', '.join(found)})"
    if sys.stdin.isatty() and typer.confirm(f"{exists}; recreate it empty?", default=False):
        return None
    return (
        f"{exists}: --force recreates it empty, `shadowline demo --clean --cluster "
        f"{place.cluster}` removes it, or choose another --cluster"
    )


def clean_demo(cluster: str) -> int:
    """Remove everything a demo cluster made: databases, queues and exchanges, logs."""
    if not CLUSTER_NAME.fullmatch(cluster):
        print(f"shadowline demo: --cluster {cluster!r} is no demo cluster name", file=sys.stderr)
        return 2
    place = footprint(cluster)
    if (pid := place.running_pid()) is not None:
        print(
            f"shadowline demo: a demo of cluster {cluster!r} is running (pid {pid}): stop it first",
            file=sys.stderr,
        )
        return 1
    databases = place.existing_databases()
    if problem := place.remove():
        print(f"shadowline demo: {problem}", file=sys.stderr)
        return 1
    gone = ", ".join(databases) if databases else "no databases"
    print(f"removed demo cluster {cluster}: {gone}, its broker names and {place.log_dir}/")
    return 0


def certificates(folder: Path) -> tuple[dict[str, dict[str, str]], str]:
    """--tls: a self-signed certificate of each instance's own, and the file trusting them."""
    own, bundle = {}, folder / "trusted.pem"
    for name in NODES:
        cert, key = self_signed(folder, name, ["127.0.0.1", "localhost"])
        own[name] = {"SHADOWLINE_TLS_CERT": str(cert), "SHADOWLINE_TLS_KEY": str(key)}
    bundle.write_text("".join((folder / f"{name}.crt").read_text() for name in NODES))
    return own, str(bundle)
