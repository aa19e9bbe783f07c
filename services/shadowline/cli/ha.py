"""`shadowline ha ...`: set up and inspect a master/shadow pair."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
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
    fail,
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
    master_user: Annotated[
        str | None,
        typer.Option("--master-user", help="An admin user of the master (default: --user)."),
    ] = None,
    master_password: Annotated[
        str | None,
        typer.Option(
            "--master-password",
            envvar="SHADOWLINE_MASTER_PASSWORD",
            help="Its password (default: --password).",
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Make this instance the shadow of a master (run against the shadow).

    Example: shadowline ha join --url http://shadow:8081 --master-url http://master:8080
    """
    with client(url, user, password) as c:
        doc = call(c.ha_join, master_url, master_user or user, master_password or password or "")
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


@app.command("switch-roles")
def switch_roles(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Planned, lossless handover: the shadow becomes master, this master its shadow.

    Example: shadowline ha switch-roles --url http://master:8080
    """
    with client(url, user, password) as c:
        doc = call(c.ha_switch_roles)
    emit(
        doc,
        as_json,
        f"{doc['new_master']} is master in epoch {doc['epoch']} (handover took "
        f"{doc['seconds'] * 1000:.0f} ms); this instance is its shadow",
    )


@app.command("maintenance")
def maintenance(
    state: Annotated[str, typer.Argument(help="on or off")],
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Pause or resume automatic failover by the watchdogs (run against the master).

    Example: shadowline ha maintenance on
    """
    if state not in ("on", "off"):
        fail("STATE must be on or off")
    with client(url, user, password) as c:
        doc = call(c.ha_maintenance, state == "on")
    emit(
        doc,
        as_json,
        f"maintenance {'on: automatic failover paused' if doc['maintenance'] else 'off'}",
    )


@app.command("quarantine")
def quarantine(
    export: Annotated[
        str | None, typer.Option(help="Write the events as NDJSON to this file.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """List (or export) events an old master wrote after a fork, kept in quarantine.

    Example: shadowline ha quarantine --export forked.ndjson
    """
    with client(url, user, password) as c:
        doc = call(c.ha_quarantine)
    if export:
        with open(export, "wb") as out:
            for event in doc["events"]:
                out.write(orjson.dumps(event) + b"\n")
    lines = [f"{doc['count']} quarantined events" + (f" written to {export}" if export else "")]
    lines += [
        f"{e['position']:>8}  e{e['epoch']}  {e['type']:<14} {e['kind'] or ''}/{e['name'] or ''} "
        f"v{e['version']}  (fork {e['fork_position']}, new epoch {e['new_epoch']})"
        for e in doc["events"]
    ]
    emit(doc, as_json, "\n".join(lines))


@app.command("setup")
def setup(
    master_url: Annotated[str, typer.Option("--master-url", help="The master-to-be.")],
    shadow_url: Annotated[str, typer.Option("--shadow-url", help="The shadow-to-be.")],
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Enable HA on the master, join the shadow and confirm it, skipping steps already done
    (the same user and password on both instances).

    Example: shadowline ha setup --master-url http://master:8080 --shadow-url http://shadow:8080
    """
    with client(master_url, user, password) as master, client(shadow_url, user, password) as shadow:
        if call(master.ha)["role"] == "standalone":
            call(master.ha_enable)
        shadow_doc = call(shadow.ha)
        if shadow_doc["role"] == "standalone":
            call(shadow.ha_join, master_url, user, password or "")
        elif shadow_doc["role"] != "shadow":
            fail(
                f"{shadow_url} is {shadow_doc['role']}, not a shadow: set up already, roles differ"
            )
        if (call(master.ha).get("shadow") or {}).get("state") == "pending":
            call(master.ha_confirm)
        doc = call(master.ha)
    emit(doc, as_json, _describe(doc))
