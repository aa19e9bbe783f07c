"""`shadowline ha ...`: set up and inspect a master/shadow pair."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from shadowline.cli import progress
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
    examples,
    fail,
)
from shadowline.cli.ha_preflight import EPILOG, preflight
from shadowline.cli.ha_switch import EPILOG as SWITCH_EPILOG
from shadowline.cli.ha_switch import switch_roles
from shadowline.cli.ha_view import describe, describe_quarantine, wait_in_sync

app = typer.Typer(
    help="High availability: set up and inspect a master/shadow pair (--json: one document).",
    no_args_is_help=True,
    epilog=examples(
        "shadowline ha setup --master-url http://master:8080 --shadow-url http://shadow:8080",
        "shadowline ha status --url http://shadow:8080 --json",
    ),
)

Wait = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Wait (with a progress bar) until the shadow has applied everything the master has.",
    ),
]
Timeout = Annotated[
    float, typer.Option(min=0, help="Seconds --wait waits before giving up (exit 4).")
]


@app.command(
    "status",
    epilog=examples(
        "shadowline ha status --url http://master:8080",
        "shadowline ha status --json | jq .shadow.lag_events",
    ),
)
def status(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Role, epoch, position, peer and replication of an instance (GET /ha)."""
    with client(url, user, password) as c:
        doc = call(c.ha)
    emit(doc, as_json, describe(doc))


@app.command(
    "enable",
    epilog=examples(
        "shadowline ha enable --url http://master:8080",
        "shadowline ha enable --url http://master:8080 --auto-confirm",
    ),
)
def enable(
    auto_confirm: Annotated[
        bool, typer.Option(help="Confirm a joining shadow without an operator.")
    ] = False,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Make this standalone instance a master (step 1 of the setup, run against the master)."""
    with client(url, user, password) as c:
        doc = call(c.ha_enable, auto_confirm)
    emit(doc, as_json, describe(doc))


@app.command(
    "join",
    epilog=examples(
        "shadowline ha join --url http://shadow:8080 --master-url http://master:8080",
        "shadowline ha join --url http://shadow:8080 --master-url http://master:8080 --wait"
        "   # master has --auto-confirm",
    ),
)
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
    wait: Wait = False,
    timeout: Timeout = 600,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Make this instance the shadow of a master (step 2, run against the shadow).

    The master lists it as pending until `ha confirm` (or at once with --auto-confirm).

    --wait waits for that and for the bootstrap, then prints the master's status.
    """
    master_login = (master_url, master_user or user, master_password or password or "")
    with client(url, user, password) as c:
        doc = call(c.ha_join, *master_login)
    if wait:
        with client(*master_login) as master:
            doc = wait_in_sync(master, timeout, progress.wanted(as_json=as_json))
    emit(doc, as_json, describe(doc))


@app.command(
    "confirm",
    epilog=examples(
        "shadowline ha confirm --url http://master:8080",
        "shadowline ha confirm --url http://master:8080 --shadow shadow-1",
    ),
)
def confirm(
    shadow: Annotated[
        str | None, typer.Option(help="The shadow's instance name (optional).")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Confirm the pending shadow (step 3, run against the master): its bootstrap starts."""
    with client(url, user, password) as c:
        doc = call(c.ha_confirm, shadow)
    emit(doc, as_json, describe(doc))


@app.command(
    "remove-shadow",
    epilog=examples(
        "shadowline ha remove-shadow --url http://master:8080",
        "shadowline ha remove-shadow --url http://master:8080 && shadowline ha join ...",
    ),
)
def remove_shadow(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Forget the shadow so that a new one can join (run against the master)."""
    with client(url, user, password) as c:
        doc = call(c.ha_remove_shadow)
    emit(doc, as_json, f"shadow {doc['removed']} removed; a new shadow may join")


@app.command(
    "verify",
    epilog=examples(
        "shadowline ha verify --url http://master:8080",
        "shadowline ha verify --json || echo 'master and shadow differ'",
    ),
)
def verify(
    url: Url = DEFAULT_URL, user: User = "admin", password: Password = None, as_json: Json = False
) -> None:
    """Compare chain value and state digest of master and shadow; exit 1 when they differ."""
    with client(url, user, password) as c:
        doc = call(c.ha_verify)
    emit(doc, as_json, doc["sentence"])
    if not doc["agree"]:
        raise typer.Exit(EXIT_REFUSED)


app.command("preflight", epilog=EPILOG)(preflight)


app.command("switch-roles", epilog=SWITCH_EPILOG)(switch_roles)


@app.command(
    "maintenance",
    epilog=examples(
        "shadowline ha maintenance on --url http://master:8080    # before planned work",
        "shadowline ha maintenance off --url http://master:8080",
    ),
)
def maintenance(
    state: Annotated[str, typer.Argument(help="on or off")],
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Pause or resume automatic failover by the watchdogs (run against the master)."""
    if state not in ("on", "off"):
        fail("STATE must be on or off")
    with client(url, user, password) as c:
        doc = call(c.ha_maintenance, state == "on")
    emit(
        doc,
        as_json,
        f"maintenance {'on: automatic failover paused' if doc['maintenance'] else 'off'}",
    )


@app.command(
    "quarantine",
    epilog=examples(
        "shadowline ha quarantine --url http://old-master:8080",
        "shadowline ha quarantine --export forked.ndjson",
        "shadowline ha quarantine --json | jq '.events[].position'",
    ),
)
def quarantine(
    export: Annotated[
        str | None, typer.Option(help="Write the events as NDJSON to this file.")
    ] = None,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """List (or export as NDJSON) events an old master wrote after a fork, kept in quarantine."""
    with client(url, user, password) as c:
        doc = call(c.ha_quarantine)
    if export:
        with open(export, "wb") as out:
            for event in doc["events"]:
                out.write(orjson.dumps(event) + b"\n")
    emit(doc, as_json, describe_quarantine(doc, export))


@app.command(
    "setup",
    epilog=examples(
        "shadowline ha setup --master-url http://master:8080 --shadow-url http://shadow:8080",
        "shadowline ha setup --master-url http://m:8080 --shadow-url http://s:8080 --no-wait",
    ),
)
def setup(
    master_url: Annotated[str, typer.Option("--master-url", help="The master-to-be.")],
    shadow_url: Annotated[str, typer.Option("--shadow-url", help="The shadow-to-be.")],
    wait: Wait = True,
    timeout: Timeout = 600,
    user: User = "admin",
    password: Password = None,
    as_json: Json = False,
) -> None:
    """Enable HA on the master, join the shadow and confirm it, skipping steps already done
    (the same user and password on both instances); then wait until the shadow is in sync.
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
        if wait:
            doc = wait_in_sync(master, timeout, progress.wanted(as_json=as_json))
        else:
            doc = call(master.ha)
    emit(doc, as_json, describe(doc))
