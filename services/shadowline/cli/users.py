"""`shadowline users ...`: the instance's own users, managed directly in its database."""

from __future__ import annotations

from typing import Annotated

import typer

from shadowline.adapters.db import create_engine
from shadowline.adapters.local import ROLES, Users
from shadowline.cli.common import fail, load_settings, run
from shadowline.domain.errors import ShadowlineError

app = typer.Typer(
    help="Manage this instance's local users (never replicated). Uses SHADOWLINE_DATABASE_URL.",
    no_args_is_help=True,
)

NewPassword = Annotated[
    str,
    typer.Option(
        prompt=True, hide_input=True, confirmation_prompt=True, envvar="SHADOWLINE_NEW_PASSWORD"
    ),
]


async def _with_users(action: str, *args: str) -> object:
    engine = create_engine(load_settings().database_url, pool_size=1)
    try:
        return await getattr(Users(engine), action)(*args)
    finally:
        await engine.dispose()


def _do(action: str, *args: str) -> object:
    try:
        return run(_with_users(action, *args))
    except (ShadowlineError, ValueError) as error:
        fail(str(error), 1)
    except OSError as error:
        fail(f"database unreachable: {error}")


@app.command("add")
def add(
    name: str,
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
    password: NewPassword = "",
) -> None:
    """Add a user. Example: shadowline users add alice --role auditor"""
    _do("add", name, role, password)
    typer.echo(f"user {name} added with role {role}")


@app.command("passwd")
def passwd(name: str, password: NewPassword = "") -> None:
    """Set a user's password. Example: shadowline users passwd alice"""
    _do("set_password", name, password)
    typer.echo(f"password of {name} changed")


@app.command("remove")
def remove(name: str) -> None:
    """Remove a user. Example: shadowline users remove alice"""
    _do("remove", name)
    typer.echo(f"user {name} removed")


@app.command("list")
def list_users() -> None:
    """List users and their roles."""
    for user in _do("all"):  # type: ignore[attr-defined]
        typer.echo(f"{user.name}\t{user.role}")
