"""The `shadowline` console script: services, client commands and tools."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from shadowline import __version__
from shadowline.cli import audit as audit_cli
from shadowline.cli import broker as broker_cli
from shadowline.cli import config as config_cli
from shadowline.cli import ha as ha_cli
from shadowline.cli import history as history_cli
from shadowline.cli import users as users_cli
from shadowline.cli import watch as watch_cli
from shadowline.cli.common import (
    EXIT_USAGE,
    examples,
    exit_codes_help,
    fail,
    load_settings,
    run,
    setup_logging,
)
from shadowline.domain.errors import Unavailable

log = logging.getLogger("shadowline")

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
app.add_typer(config_cli.app, name="config")
app.add_typer(users_cli.app, name="users")
app.add_typer(history_cli.app, name="history")
app.command(
    "broker-setup",
    epilog=examples(
        "shadowline broker-setup --cluster prod > setup.sh   # review, then run it",
        "shadowline broker-setup --cluster prod --apply      # run rabbitmqctl here",
    ),
)(broker_cli.broker_setup)
app.command("watch", epilog=watch_cli.EXAMPLES)(watch_cli.watch)
app.add_typer(ha_cli.app, name="ha")
app.add_typer(audit_cli.app, name="audit")
bench_app = typer.Typer(
    help="Benchmarks that print figures.",
    no_args_is_help=True,
    epilog=examples("shadowline bench append", "shadowline bench replication --quick"),
)
app.add_typer(bench_app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shadowline {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Run `shadowline demo` to see a master and its shadow on this machine."""


@app.command(
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


@app.command(
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
    from shadowline.runtime import serve

    setup_logging()
    settings = load_settings()
    log.info("effective settings: %s", settings.masked())
    try:
        run(serve(settings, migrate=not no_migrate))
    except (Unavailable, OSError, DBAPIError) as error:
        fail(f"database unreachable or unusable: {str(error).splitlines()[0]}", EXIT_USAGE)
    except KeyboardInterrupt:
        pass


@app.command(
    epilog=examples(
        "shadowline demo",
        "shadowline demo --failover --exit-after 60     # then kill the master and watch",
    )
)
def demo(
    port: Annotated[int, typer.Option(help="HTTP port of the first instance.")] = 8080,
    exit_after: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (for scripts).")
    ] = None,
    failover: Annotated[
        bool, typer.Option("--failover", help="Then kill the master and show the failover.")
    ] = False,
    cluster: Annotated[
        str,
        typer.Option(
            help="Cluster name; the databases are shadowline_<cluster>_master and _shadow "
            "('.' and '-' become '_'), recreated empty.",
        ),
    ] = "demo",
) -> None:
    """The main job on a fresh machine: start shadowline locally, load samples, print the URLs.

    A process that dies is started again after 5 s, so `kill -9` of the master shows a failover
    and the old master rejoining as shadow, on the HA screens and in `shadowline watch`.
    """
    from shadowline.cli.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(run_demo(port, exit_after, failover, cluster))


@app.command(
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
) -> None:
    """Run the watchdog: promote a shadow when its master's heartbeats stop and a probe fails.

    Example: shadowline watchdog --cluster prod --cluster staging
    """
    from shadowline.watchdog.service import run_watchdog

    setup_logging()
    settings = load_settings(watchdog_http_bind=http_bind)
    clusters = cluster or [settings.cluster]
    me = name or settings.instance
    log.info("watchdog %s: clusters %s, settings %s", me, clusters, settings.masked())
    try:
        run(run_watchdog(settings, clusters, me, allow_data_loss, health_file))
    except OSError as error:  # the HTTP port is taken or not ours to bind
        fail(str(error))


@bench_app.command("append", epilog=examples("shadowline bench append --events 5000"))
def bench_append(
    events: Annotated[int, typer.Option(help="Events per store run.")] = 20000,
    http_requests: Annotated[int, typer.Option(help="Requests in the HTTP run.")] = 10000,
    skip_eventsourcing: Annotated[bool, typer.Option(help="Do not run the comparison.")] = False,
) -> None:
    """Acknowledged, durable appends: store with 1 and 32 writers, HTTP with 16 clients."""
    from shadowline.bench.append import main as bench_main

    setup_logging("WARNING")
    settings = load_settings()
    raise typer.Exit(run(bench_main(settings, events, http_requests, not skip_eventsourcing)))


@bench_app.command(
    "replication", epilog=examples("shadowline bench replication --quick --seconds 10")
)
def bench_replication(
    quick: Annotated[
        bool, typer.Option(help="Small sizes, for a check on a busy machine.")
    ] = False,
    seconds: Annotated[
        float | None, typer.Option(help="Maximum-rate run length (default 30; 0 skips it).")
    ] = None,
    clients: Annotated[int, typer.Option(help="Clients in the maximum-rate run.")] = 16,
    paced_rate: Annotated[
        float | None, typer.Option(help="PUT/s of the open-loop run (default 1000).")
    ] = None,
    paced_seconds: Annotated[
        float | None, typer.Option(help="Open-loop run length (default 10; 0 skips it).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Items for the bootstrap (default 100000; 0 skips it).")
    ] = None,
) -> None:
    """A master and its shadow as processes: apply rate vs append rate, lag p50/p99, bootstrap."""
    from shadowline.bench.replication import FULL, QUICK, Sizes
    from shadowline.bench.replication import main as bench_main

    setup_logging("WARNING")
    settings = load_settings()
    base = QUICK if quick else FULL
    sizes = Sizes(
        seconds=base.seconds if seconds is None else seconds,
        paced_rate=base.paced_rate if paced_rate is None else paced_rate,
        paced_seconds=base.paced_seconds if paced_seconds is None else paced_seconds,
        items=base.items if items is None else items,
        clients=clients,
    )
    raise typer.Exit(run(bench_main(settings, sizes)))


@bench_app.command("failover", epilog=examples("shadowline bench failover --quick --keep-logs"))
def bench_failover(
    quick: Annotated[bool, typer.Option(help="3 trials of each, for a check.")] = False,
    trials: Annotated[
        int | None, typer.Option(help="Failovers after SIGKILL (default 20; 0 skips them).")
    ] = None,
    switches: Annotated[
        int | None, typer.Option(help="Switches of roles (default 10; 0 skips them).")
    ] = None,
    clients: Annotated[int, typer.Option(help="Clients writing through the trials.")] = 4,
    keep_logs: Annotated[
        bool, typer.Option(help="Keep the instances' and the watchdog's logs.")
    ] = False,
) -> None:
    """Master, shadow and watchdog as processes: failover time, switch-roles unavailability."""
    from shadowline.bench.failover import FULL, QUICK, Sizes
    from shadowline.bench.failover import main as bench_main

    setup_logging("WARNING")
    settings = load_settings()
    base = QUICK if quick else FULL
    sizes = Sizes(
        trials=base.trials if trials is None else trials,
        switches=base.switches if switches is None else switches,
        clients=clients,
    )
    raise typer.Exit(run(bench_main(settings, sizes, keep_logs)))


def main() -> None:
    app()
