"""The `shadowline` console script: services, client commands and tools."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from sqlalchemy.exc import DBAPIError

from shadowline import __version__
from shadowline.cli import broker as broker_cli
from shadowline.cli import config as config_cli
from shadowline.cli import ha as ha_cli
from shadowline.cli import users as users_cli
from shadowline.cli.common import (
    EXIT_USAGE,
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
)
app.add_typer(config_cli.app, name="config")
app.add_typer(users_cli.app, name="users")
app.command("history")(config_cli.history)
app.command("broker-setup")(broker_cli.broker_setup)
app.add_typer(ha_cli.app, name="ha")
bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
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


@app.command()
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


@app.command()
def instance(
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not migrate at start.")
    ] = False,
) -> None:
    """Run one instance (master, shadow or standalone: its role lives in its database)."""
    from shadowline.instance.main import serve

    setup_logging()
    settings = load_settings()
    log.info("effective settings: %s", settings.masked())
    try:
        run(serve(settings, migrate=not no_migrate))
    except (Unavailable, OSError, DBAPIError) as error:
        fail(f"database unreachable or unusable: {str(error).splitlines()[0]}", EXIT_USAGE)
    except KeyboardInterrupt:
        pass


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="HTTP port of the first instance.")] = 8080,
    exit_after: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (for scripts).")
    ] = None,
) -> None:
    """The main job on a fresh machine: start shadowline locally, load samples, print the URLs."""
    from shadowline.cli.demo import run_demo

    setup_logging("WARNING")
    raise typer.Exit(run_demo(port, exit_after))


@bench_app.command("append")
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


def main() -> None:
    app()
