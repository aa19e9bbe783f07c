"""`shadowline ha ...`: set up and inspect a master/shadow pair."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    Json,
    Password,
    Url,
    User,
    call,
    client,
    emit,
)

app = typer.Typer(
    help="High availability: set up and inspect a master/shadow pair.", no_args_is_help=True
)


def _describe(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['instance']}: {doc['role']} in epoch {doc['epoch']} at position {doc['position']}"
    ]
    if doc.get("replication"):
        lines.append(f"  replication {doc['replication']}")
    if shadow := doc.get("shadow"):
        age = shadow.get("last_seen_age")
        seen = f", last seen {age:.1f}s ago" if age is not None else ""
        lines.append(
            f"  shadow {shadow['instance']} ({shadow['url']}): {shadow['state']}, at position "
            f"{shadow['position']}, {shadow['lag_events']} events behind{seen}"
        )
    if master := doc.get("master"):
        lag = doc.get("lag") or {}
        lines.append(f"  master {master['instance']} ({master['url']})")
        if lag.get("events") is not None:
            lines.append(f"  lag {lag['events']} events, {lag['seconds']:.2f}s")
    return "\n".join(lines)


@app.command("status")
def status(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Role, epoch, position, peer and replication of an instance. Example: shadowline ha status"""
    with client(url, user, password) as c:
        doc = call(c.ha)
    emit(doc, as_json, _describe(doc))


@app.command("enable")
def enable(
    auto_confirm: Annotated[
        bool, typer.Option(help="Confirm a joining shadow without an operator.")
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Make this standalone instance a master. Example: shadowline ha enable --url http://master:8080"""
    with client(url, user, password) as c:
        doc = call(c.ha_enable, auto_confirm)
    emit(doc, as_json, _describe(doc))


@app.command("join")
def join(
    master_url: Annotated[str, typer.Option("--master-url", help="The master's URL.")],
    master_user: Annotated[str, typer.Option("--master-user", help="An admin user of the master.")],
    master_password: Annotated[
        str,
        typer.Option(
            "--master-password", envvar="SHADOWLINE_MASTER_PASSWORD", prompt=True, hide_input=True
        ),
    ],
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Make this instance the shadow of a master (run against the shadow).

    Example: shadowline ha join --url http://shadow:8081 --master-url http://master:8080 --master-user admin
    """
    with client(url, user, password) as c:
        doc = call(c.ha_join, master_url, master_user, master_password)
    emit(doc, as_json, _describe(doc))


@app.command("confirm")
def confirm(
    shadow: Annotated[
        str | None, typer.Option(help="The shadow's instance name (optional).")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Confirm the pending shadow (run against the master). Example: shadowline ha confirm"""
    with client(url, user, password) as c:
        doc = call(c.ha_confirm, shadow)
    emit(doc, as_json, _describe(doc))


@app.command("remove-shadow")
def remove_shadow(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Forget the shadow so that a new one can join (run against the master)."""
    with client(url, user, password) as c:
        doc = call(c.ha_remove_shadow)
    emit(doc, as_json, f"shadow {doc['removed']} removed; a new shadow may join")


@app.command("verify")
def verify(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Compare chain value and state digest of master and shadow; exit 1 when they differ."""
    with client(url, user, password) as c:
        doc = call(c.ha_verify)
    emit(doc, as_json, doc["sentence"])
    if not doc["agree"]:
        raise typer.Exit(EXIT_REFUSED)
