"""The `shadowline` console script: services, client commands and tools.

`main` builds the root and only the command named on its command line, so each command's module
(and what that imports) is loaded by the command that runs it (start-up time, issue 13).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from shadowline import __version__
from shadowline.cli.common import (
    EXIT_USAGE,
    examples,
    exit_codes_help,
    fail,
    load_settings,
    run,
    setup_logging,
)
from shadowline.domain.errors import BackupRefused, Unavailable

log = logging.getLogger("shadowline")
GROUPS = ("config", "users", "history", "ha", "audit", "bench")  # each the `app` of cli/<name>.py
Command = tuple[Callable[..., Any], dict[str, Any]]  # a function and its `app.command` kwargs


def _from(module: str, function: str) -> Callable[[], Command]:
    def load() -> Command:
        found = importlib.import_module(f"shadowline.cli.{module}")
        return getattr(found, function), {"epilog": found.EXAMPLES}

    return load


# The commands, in their order on the root's --help, each loaded only when the tree is built.
COMMANDS = {"broker-setup": _from("broker", "broker_setup"), "watch": _from("watch", "watch")}
COMMANDS |= {name: _from(name, name) for name in ("backup", "restore")}


def _command(**settings: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.command(**settings)` for a command of this module, done when the tree is built."""

    def keep(function: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS[function.__name__] = lambda: (function, settings)
        return function

    return keep


def build(only: str | None = None) -> typer.Typer:
    """The command tree; with `only`, the root with that one command or group of commands."""
    app = typer.Typer(
        help="shadowline: master/shadow high availability for configuration.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        epilog=examples(
            "shadowline demo",
            "shadowline config list --url http://127.0.0.1:8080 --user admin --password ...",
            "shadowline COMMAND --help                        # each command's examples",
        )
        + "\n\n"
        + exit_codes_help(),
    )
    app.callback()(root)
    for name, load in COMMANDS.items():
        if only in (None, name):
            function, settings = load()
            app.command(name, **settings)(function)
    for name in GROUPS:
        if only in (None, name):
            app.add_typer(importlib.import_module(f"shadowline.cli.{name}").app, name=name)
    return app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shadowline {__version__}")
        raise typer.Exit()


def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run `shadowline demo` to see a master and its shadow on this machine."""


@_command(
    epilog=examples(
        "SHADOWLINE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sl shadowline migrate",
        "shadowline migrate --create-database --app-role shadowline_app",
    )
)
def migrate(
    create_database: Annotated[
        bool, typer.Option(help="Create the database if it is missing.")
    ] = False,
    app_role: Annotated[
        str | None,
        typer.Option(help="Grant this PostgreSQL role only what a running instance needs."),
    ] = None,
) -> None:
    """Apply migrations to SHADOWLINE_DATABASE_URL (idempotent)."""
    from sqlalchemy.exc import DBAPIError

    from shadowline.adapters.migrate import create_database as create
    from shadowline.adapters.migrate import grant_app_role, upgrade

    setup_logging()
    settings = load_settings()
    try:
        if create_database and run(create(settings.database_url)):
            log.info("created the database")
        upgrade(settings.database_url)
        if app_role:
            run(grant_app_role(settings.database_url, app_role))
            log.info("granted role %s the least privileges an instance needs", app_role)
    except (OSError, DBAPIError) as error:
        fail(f"cannot migrate the database: {str(error).splitlines()[0]}")
    log.info("database is at the newest schema revision")


@_command(
    epilog=examples(
        "SHADOWLINE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sl shadowline instance",
        "SHADOWLINE_HTTP_BIND=0.0.0.0:8081 shadowline instance --no-migrate",
    )
)
def instance(
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not migrate at start.")
    ] = False,
) -> None:
    """Run one instance (master, shadow or standalone: its role lives in its database)."""
    from sqlalchemy.exc import DBAPIError

    from shadowline.runtime import serve

    setup_logging()
    settings = load_settings()
    log.info("effective settings: %s", settings.masked())
    try:
        run(serve(settings, migrate=not no_migrate))
    except (Unavailable, BackupRefused, OSError, DBAPIError) as error:
        fail(f"database unreachable or unusable: {str(error).splitlines()[0]}", EXIT_USAGE)
    except KeyboardInterrupt:
        pass


# Long for its options and help (a string: rich keeps docstring line breaks); work: cli/demo*.py
@_command(
    help="The main job on a fresh machine: start shadowline locally, load samples, print the "
    "URLs.\n\nTwo instances, node-a (the first master) and node-b (its shadow), and a "
    "watchdog. A process that dies is started again after 5 s, so `kill -9` of the master "
    "shows a failover and the old master rejoining as shadow, on the HA screens and in "
    "`shadowline watch`; the demo then says who is master now.\n\nA cluster that exists from "
    "an earlier demo is recreated empty only when you say so (asked on a terminal, else "
    "--force). Ctrl-C, SIGTERM and SIGHUP stop everything the demo started.",
    epilog=examples(
        "shadowline demo",
        "shadowline demo --failover --exit-after 60     # then kill the master and watch",
        "shadowline demo --cluster try2 --port 9080      # a second demo beside the first",
        "shadowline demo --clean                         # remove everything the demo made",
    ),
)
def demo(
    port: Annotated[
        int,
        typer.Option(
            help="HTTP port of the first instance (the next follow; a busy one is replaced)."
        ),
    ] = 8080,
    exit_after: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (for scripts).")
    ] = None,
    failover: Annotated[
        bool, typer.Option("--failover", help="Then kill the master and show the failover.")
    ] = False,
    cluster: Annotated[
        str,
        typer.Option(
            help="Cluster name; its databases are shadowline_<cluster>_node_a and _node_b "
            "('.' and '-' become '_'), its logs in .shadowline-demo/<cluster>/ (new ones "
            "each run: the last run's are kept as <name>.log.1).",
        ),
    ] = "demo",
    force: Annotated[
        bool,
        typer.Option("--force", help="Recreate an existing demo cluster empty without asking."),
    ] = False,
    tls: Annotated[bool, typer.Option("--tls", help="HTTPS, self-signed certificates.")] = False,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean", help="Remove the cluster's databases, queues, exchanges and logs; exit."
        ),
    ] = False,
) -> None:
    if clean:
        from shadowline.cli.demo_state import clean_demo

        raise typer.Exit(clean_demo(cluster))
    from shadowline.cli.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(run_demo(port, exit_after, failover, cluster, force, tls))


# Long only because typer declares each of its options in the signature, with its help.
@_command(
    epilog=examples(
        "shadowline watchdog --cluster prod --cluster staging",
        "shadowline watchdog --name wd-2 --health-file /run/shadowline/watchdog.alive",
    )
)
def watchdog(
    cluster: Annotated[
        list[str] | None, typer.Option("--cluster", help="A cluster to watch (repeatable).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="This watchdog's name (default: from the host).")
    ] = None,
    allow_data_loss: Annotated[
        bool, typer.Option(help="Promote a shadow even when it lags behind acknowledged writes.")
    ] = False,
    health_file: Annotated[
        str | None, typer.Option(help="Touch this file every second while connected.")
    ] = None,
    http_bind: Annotated[
        str | None,
        typer.Option(
            help="Serve GET /health and GET /metrics on HOST:PORT "
            "(default: SHADOWLINE_WATCHDOG_HTTP_BIND; off when neither is set)."
        ),
    ] = None,
    secrets_file: Annotated[
        str | None,
        typer.Option(
            envvar="SHADOWLINE_CLUSTER_SECRETS_FILE",
            help="A JSON object of cluster name -> secret, for clusters with a secret of their "
            "own (the others use SHADOWLINE_CLUSTER_SECRET); without --cluster, its clusters "
            "are the ones watched.",
        ),
    ] = None,
) -> None:
    """Run the watchdog: promote a shadow when its master's heartbeats stop and a probe fails.

    Example: shadowline watchdog --cluster prod --cluster staging
    """
    from shadowline.watchdog_runtime import read_secrets, run_watchdog

    setup_logging()
    settings = load_settings(watchdog_http_bind=http_bind)
    try:
        secrets = read_secrets(secrets_file) if secrets_file else {}
    except ValueError as error:
        fail(str(error))
    clusters = cluster or sorted(secrets) or [settings.cluster]
    me = name or settings.instance
    shown = clusters if len(clusters) <= 10 else f"{len(clusters)} ({clusters[0]}, ...)"
    log.info("watchdog %s: clusters %s, settings %s", me, shown, settings.masked_for_watchdog())
    if secrets:
        log.info("cluster secrets of their own from %s: %d clusters", secrets_file, len(secrets))
    try:
        run(run_watchdog(settings, clusters, me, allow_data_loss, health_file, secrets))
    except OSError as error:  # the HTTP port is taken or not ours to bind
        fail(str(error))


def _named(argv: list[str]) -> str | None:
    """The command named first, unless the root itself is asked (an option, shell completion)."""
    first = "" if not argv or os.environ.get("_SHADOWLINE_COMPLETE") else argv[0]
    return first if first in GROUPS or first in COMMANDS else None


def __getattr__(name: str) -> typer.Typer:
    """`app`, the whole tree (tests, docs), built on first use."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = build()
    return app


def main() -> None:
    # httpx imports its command line client (click, rich, pygments: half its import time) when
    # click is installed; None in sys.modules fails that import as without click (httpx's stub).
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    build(_named(sys.argv[1:]))()
