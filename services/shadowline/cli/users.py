"""`shadowline users ...`: the instance's own users, managed directly in its database."""

from __future__ import annotations

from typing import Annotated

import typer

from shadowline.cli.common import (
    EXIT_REFUSED,
    EXIT_USAGE,
    Json,
    emit,
    examples,
    fail,
    load_settings,
    run,
)
from shadowline.domain.errors import InvalidInput, ShadowlineError
from shadowline.domain.users import ROLES

app = typer.Typer(
    help="Manage this instance's local users (never replicated). Uses SHADOWLINE_DATABASE_URL.",
    no_args_is_help=True,
    epilog=examples(
        "SHADOWLINE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/sl shadowline users list",
        "shadowline users add alice --role auditor",
    ),
)

NewPassword = Annotated[
    str,
    typer.Option(
        prompt=True, hide_input=True, confirmation_prompt=True, envvar="SHADOWLINE_NEW_PASSWORD"
    ),
]


# SQLAlchemy is imported when a command runs, not for every `shadowline ...` (issue 13).
async def _with_users(action: str, *args: str) -> object:
    from shadowline.adapters.db import create_engine
    from shadowline.adapters.local import Users

    engine = create_engine(load_settings().database_url, pool_size=1)
    try:
        return await getattr(Users(engine), action)(*args)
    finally:
        await engine.dispose()


def _do(action: str, *args: str) -> object:
    from sqlalchemy.exc import DBAPIError

    try:
        return run(_with_users(action, *args))
    except InvalidInput as error:  # a name or password no user may have: a bad argument
        fail(f"refused: {error}", EXIT_USAGE)
    except (ShadowlineError, ValueError) as error:
        fail(str(error), EXIT_REFUSED)
    except (OSError, DBAPIError) as error:
        fail(f"database unreachable: {str(error).splitlines()[0]}", EXIT_USAGE)


@app.command(
    "add",
    epilog=examples(
        "shadowline users add alice --role auditor         # prompts for the password",
        "SHADOWLINE_NEW_PASSWORD=... shadowline users add ci --role admin",
    ),
)
def add(
    name: str,
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
    password: NewPassword = "",
) -> None:
    """Add a user of this instance (exit 1 when it exists or the role is unknown; exit 2 for
    an empty name, one with ':' or control characters, or an empty password)."""
    _do("add", name, role, password)
    typer.echo(f"user {name} added with role {role}")


@app.command(
    "passwd",
    epilog=examples(
        "shadowline users passwd alice",
        "SHADOWLINE_NEW_PASSWORD=... shadowline users passwd ci",
    ),
)
def passwd(name: str, password: NewPassword = "") -> None:
    """Set a user's password (exit 1 when there is no such user, 2 for an empty password)."""
    _do("set_password", name, password)
    typer.echo(f"password of {name} changed")


@app.command("remove", epilog=examples("shadowline users remove alice"))
def remove(name: str) -> None:
    """Remove a user (exit 1 when there is no such user)."""
    _do("remove", name)
    typer.echo(f"user {name} removed")


@app.command(
    "list",
    epilog=examples(
        "shadowline users list",
        "shadowline users list --json | jq -r '.[] | select(.role == \"admin\") | .name'",
    ),
)
def list_users(as_json: Json = False) -> None:
    """List users and their roles (--json: an array of {"name", "role"})."""
    users = [{"name": u.name, "role": u.role} for u in _do("all")]  # type: ignore[attr-defined]
    emit(users, as_json, "\n".join(f"{u['name']}\t{u['role']}" for u in users))
